package kube

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// unsupported returns an error for each field of the struct v (a value or
// a pointer to one) that is set but not among supported (JSON names), at
// path: what podbox would otherwise silently ignore.
func unsupported(path string, v any, supported ...string) []error {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	var errs []error
	rt := rv.Type()
	for i := range rt.NumField() {
		f := rt.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			// Embedded TypeMeta and the like: checked by their own rules.
			continue
		}
		if slices.Contains(supported, name) || rv.Field(i).IsZero() {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: not supported", join(path, name)))
	}
	return errs
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
