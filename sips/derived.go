package sips

import (
	"errors"

	"github.com/emiago/sipgo/sip"
)

// ErrSIPReferInSIPSDialog: sipsvc was about to REFER the party of a secure (sips) dialog to
// a sip: URI, which would make it set up a new dialog with SIP (R17).
var ErrSIPReferInSIPSDialog = errors.New("sips: sip Refer-To inside a sips dialog (R17)")

// CheckReferTo checks the Refer-To of a REFER that sipsvc sends on a leg (RFC 5630 §5.1.1.3,
// R17): a dialog set up with sips (the leg is secure, R25) must not lead to a new dialog set
// up with sip, so a sip: Refer-To is refused there. The URI is not rewritten to sips: that
// would be the silent upgrade R38 forbids. A sips: Refer-To, or any Refer-To in a sip
// dialog, is allowed.
func CheckReferTo(dialog Decision, referTo sip.Uri) error {
	if dialog.Secure && !IsSIPS(&referTo) {
		return ErrSIPReferInSIPSDialog
	}
	return nil
}
