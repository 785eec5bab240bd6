package service

import "github.com/sipsvc/sipsvc/signaling"

// The B2BUA implements what the API needs from it. (Kept in a test file so that service
// builds while signaling's call control is work in progress; move it to interfaces.go once
// signaling/control.go is committed.)
var _ CallControl = (*signaling.Server)(nil)

// The B2BUA is a readiness source: not ready until it serves, nor while it drains.
var _ Readiness = (*signaling.Server)(nil)
