package signaling

// This file gives legs the typed outcome calls have (outcome.go): the path that ends a leg
// sets it, and the leg span's status and the leg_released event read it, never the
// free-text cause.

// setOutcomeLocked records how the leg ends; the first one set wins. The caller holds l.mu.
func (l *leg) setOutcomeLocked(o Outcome) {
	if l.outcome == "" {
		l.outcome = o
	}
}

// setOutcome records how the leg ends; the first one set wins.
func (l *leg) setOutcome(o Outcome) {
	l.mu.Lock()
	l.setOutcomeLocked(o)
	l.mu.Unlock()
}

// releaseLegAs releases l (releaseLeg) with the outcome o, unless an earlier path already
// set the leg's outcome.
func (c *call) releaseLegAs(l *leg, o Outcome, cause string, status int) {
	l.setOutcome(o)
	c.releaseLeg(l, cause, status)
}

// legOutcome is how a leg ended: the outcome its path set, else, for a release without a
// final status (status 0), answered when the leg was talking and failed otherwise, else
// the outcome of its final status (outcomeForStatus), else failed.
func legOutcome(set Outcome, prev CallState, status int) Outcome {
	switch {
	case set != "":
		return set
	case status == 0 && prev == StateTalking:
		return OutcomeAnswered
	case status == 0:
		return OutcomeFailed
	}
	if o := outcomeForStatus(status); o != "" {
		return o
	}
	return OutcomeFailed
}

// legEndedByUs reports whether a leg's outcome means sipsvc itself gave it up (our CANCEL:
// the caller cancelled, another leg answered, or the ring timeout): then a 487 on the leg's
// CLIENT span is no error.
func legEndedByUs(o Outcome) bool { return o == OutcomeCancelled || o == OutcomeNoAnswer }
