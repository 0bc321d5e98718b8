package stats

import (
	"math"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	ten := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	tests := []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"one sample is every percentile", []float64{7}, 99, 7},
		{"median of ten is the fifth", ten, 50, 5},
		{"p90 of ten is the ninth", ten, 90, 9},
		{"p99 of ten is the maximum", ten, 99, 10},
		{"p91 of ten rounds the rank up", ten, 91, 10},
		{"p100 is the maximum", ten, 100, 10},
		{"tiny p is the minimum", ten, 0.1, 1},
		{"p50 of 100", hundred, 50, 50},
		{"p99 of 100", hundred, 99, 99},
		{"even count takes the lower middle", []float64{1, 2, 3, 4}, 50, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("Percentile of nothing = %v, want NaN", got)
	}
}

func TestSummarize(t *testing.T) {
	in := []float64{9, 1, 5, 3, 7}
	got := Summarize(in)
	want := Summary{N: 5, Min: 1, Max: 9, Mean: 5, P50: 5, P90: 9, P99: 9}
	if got != want {
		t.Errorf("Summarize(%v) = %+v, want %+v", in, got, want)
	}
	if in[0] != 9 || in[1] != 1 {
		t.Errorf("Summarize sorted its input in place: %v", in)
	}
	if got := Summarize(nil); got != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want the zero Summary", got)
	}
}

func TestMillis(t *testing.T) {
	got := Millis([]time.Duration{1500 * time.Microsecond, 2 * time.Second})
	if len(got) != 2 || got[0] != 1.5 || got[1] != 2000 {
		t.Errorf("Millis = %v, want [1.5 2000]", got)
	}
}
