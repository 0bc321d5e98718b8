// Package eventsapi is containerd's ttrpc events service (proto package
// containerd.services.events.ttrpc.v1, service Events), to which a shim
// forwards its events, for podbox: the messages and ttrpc stubs, generated
// by hack/gen-api.sh; see runtime/apitypes for why podbox has its own copy.
package eventsapi
