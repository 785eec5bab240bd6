package service

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
	"github.com/sipsvc/sipsvc/store"
)

// directoryServer implements DirectoryService on a store.Store and a Registrations.
type directoryServer struct {
	sipsvcv1.UnimplementedDirectoryServiceServer
	store store.Store
	regs  Registrations
	realm string
	enums *enumTables
}

var _ sipsvcv1.DirectoryServiceServer = (*directoryServer)(nil)

// setPassword replaces d's HA1 hashes: empty password means none.
func (s *directoryServer) setPassword(d *dn.DN, password string) {
	d.HA1MD5, d.HA1SHA256 = "", ""
	if password != "" {
		d.HA1MD5, d.HA1SHA256 = dn.HashPassword(d.Number, s.realm, password)
	}
}

// CreateDN validates the DN, hashes its password and stores it.
func (s *directoryServer) CreateDN(ctx context.Context, req *sipsvcv1.CreateDNRequest) (*sipsvcv1.CreateDNResponse, error) {
	if req.GetDn() == nil {
		return nil, invalidField("dn", "is required")
	}
	d, err := s.enums.dnFromProto(req.GetDn())
	if err != nil {
		return nil, grpcError(err, "dn.")
	}
	if err := requireType(req.GetDn()); err != nil {
		return nil, err
	}
	if err := checkDisplayName(d.DisplayName); err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, grpcError(err, "dn.")
	}
	s.setPassword(&d, req.GetDn().GetPassword())
	if err := s.store.CreateDN(ctx, d); err != nil {
		subject, key := dnSubject(d.Number)
		return nil, subjectError("create DN", subject, key, err, "dn.")
	}
	return &sipsvcv1.CreateDNResponse{Dn: dnToProto(d)}, nil
}

// GetDN returns one DN without hashes.
func (s *directoryServer) GetDN(ctx context.Context, req *sipsvcv1.GetDNRequest) (*sipsvcv1.GetDNResponse, error) {
	if err := checkNumber("number", req.GetNumber()); err != nil {
		return nil, err
	}
	d, err := s.store.Lookup(ctx, req.GetNumber())
	if err != nil {
		subject, key := dnSubject(req.GetNumber())
		return nil, subjectError("get DN", subject, key, err, "")
	}
	return &sipsvcv1.GetDNResponse{Dn: dnToProto(d)}, nil
}

// UpdateDN applies the fields named in update_mask (proto names; output-only has_password
// is ignored, number is immutable), or replaces every field when there is no mask. Without
// a mask an empty password keeps the current one; with "password" in the mask an empty
// password removes it.
func (s *directoryServer) UpdateDN(ctx context.Context, req *sipsvcv1.UpdateDNRequest) (*sipsvcv1.UpdateDNResponse, error) {
	p := req.GetDn()
	if p == nil {
		return nil, invalidField("dn", "is required")
	}
	if err := checkNumber("dn.number", p.GetNumber()); err != nil {
		return nil, err
	}
	in, err := s.enums.dnFromProto(p)
	if err != nil {
		return nil, grpcError(err, "dn.")
	}
	paths := req.GetUpdateMask().GetPaths()
	for _, path := range paths {
		if !updatable(path) {
			if path == "number" {
				return nil, invalidField("update_mask", "number cannot be changed")
			}
			if path != "has_password" {
				return nil, invalidField("update_mask", "unknown field %q", path)
			}
		}
	}
	cur, err := s.store.Lookup(ctx, p.GetNumber())
	if err != nil {
		subject, key := dnSubject(p.GetNumber())
		return nil, subjectError("update DN", subject, key, err, "")
	}
	next := cur
	if len(paths) == 0 {
		if err := requireType(p); err != nil {
			return nil, err
		}
		next = in
		next.HA1MD5, next.HA1SHA256 = cur.HA1MD5, cur.HA1SHA256
		if p.GetPassword() != "" {
			s.setPassword(&next, p.GetPassword())
		}
	} else {
		for _, path := range paths {
			applyPath(&next, in, path)
			if path == "password" {
				s.setPassword(&next, p.GetPassword())
			}
		}
	}
	if err := next.Validate(); err != nil {
		return nil, grpcError(err, "dn.")
	}
	if err := checkDisplayName(next.DisplayName); err != nil {
		return nil, err
	}
	if err := s.store.UpdateDN(ctx, next); err != nil {
		subject, key := dnSubject(next.Number)
		return nil, subjectError("update DN", subject, key, err, "dn.")
	}
	return &sipsvcv1.UpdateDNResponse{Dn: dnToProto(next)}, nil
}

// maskFields are the DN fields an update mask may name.
var maskFields = []string{
	"type", "contact", "display_name", "policy", "style", "insecure_skip_verify", "disabled",
	"password", "trusted_sources", "trusted_cert_subjects", "traceparent", "allow_anonymous",
}

func updatable(path string) bool { return slices.Contains(maskFields, path) }

// applyPath copies one field (by proto name) from in to d. "password" is handled by the caller.
func applyPath(d *dn.DN, in dn.DN, path string) {
	switch path {
	case "type":
		d.Type = in.Type
	case "contact":
		d.Contact = in.Contact
	case "display_name":
		d.DisplayName = in.DisplayName
	case "policy":
		d.Policy = in.Policy
	case "style":
		d.Style = in.Style
	case "insecure_skip_verify":
		d.InsecureSkipVerify = in.InsecureSkipVerify
	case "disabled":
		d.Disabled = in.Disabled
	case "trusted_sources":
		d.TrustedSources = in.TrustedSources
	case "trusted_cert_subjects":
		d.TrustedCertSubjects = in.TrustedCertSubjects
	case "traceparent":
		d.Traceparent = in.Traceparent
	case "allow_anonymous":
		d.AllowAnonymous = in.AllowAnonymous
	}
}

// DeleteDN removes a DN and its bindings.
func (s *directoryServer) DeleteDN(ctx context.Context, req *sipsvcv1.DeleteDNRequest) (*sipsvcv1.DeleteDNResponse, error) {
	if err := checkNumber("number", req.GetNumber()); err != nil {
		return nil, err
	}
	if err := s.store.DeleteDN(ctx, req.GetNumber()); err != nil {
		subject, key := dnSubject(req.GetNumber())
		return nil, subjectError("delete DN", subject, key, err, "")
	}
	return &sipsvcv1.DeleteDNResponse{}, nil
}

// ListDNs pages the DNs by number.
func (s *directoryServer) ListDNs(ctx context.Context, req *sipsvcv1.ListDNsRequest) (*sipsvcv1.ListDNsResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodePageToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	all, err := s.store.ListDNs(ctx)
	if err != nil {
		return nil, grpcError(fmt.Errorf("list DNs: %w", err), "")
	}
	// store.Store.ListDNs returns the DNs sorted by number, which the page token relies on.
	start := 0
	if after != "" {
		start, _ = slices.BinarySearchFunc(all, after, func(d dn.DN, k string) int {
			if d.Number <= k {
				return -1
			}
			return 1
		})
	}
	end := min(start+size, len(all))
	resp := &sipsvcv1.ListDNsResponse{}
	for _, d := range all[start:end] {
		resp.Dns = append(resp.Dns, dnToProto(d))
	}
	if end < len(all) {
		resp.NextPageToken = encodePageToken(all[end-1].Number)
	}
	return resp, nil
}

// ListRegistrations lists a DN's bindings sorted by contact.
func (s *directoryServer) ListRegistrations(ctx context.Context, req *sipsvcv1.ListRegistrationsRequest) (*sipsvcv1.ListRegistrationsResponse, error) {
	if err := checkNumber("number", req.GetNumber()); err != nil {
		return nil, err
	}
	bs, err := s.regs.List(ctx, req.GetNumber())
	if err != nil {
		subject, key := dnSubject(req.GetNumber())
		return nil, subjectError("list registrations", subject, key, err, "")
	}
	// Registrations.List promises no order; the API lists by contact.
	slices.SortFunc(bs, func(a, b dn.Binding) int { return strings.Compare(a.Contact, b.Contact) })
	resp := &sipsvcv1.ListRegistrationsResponse{}
	for _, b := range bs {
		resp.Registrations = append(resp.Registrations, bindingToProto(b))
	}
	return resp, nil
}

// RemoveRegistration validates the contact and removes that binding.
func (s *directoryServer) RemoveRegistration(ctx context.Context, req *sipsvcv1.RemoveRegistrationRequest) (*sipsvcv1.RemoveRegistrationResponse, error) {
	if err := checkNumber("number", req.GetNumber()); err != nil {
		return nil, err
	}
	if req.GetContact() == "" {
		return nil, invalidField("contact", "is required: the registered contact URI")
	}
	var u sip.Uri
	if err := sip.ParseUri(req.GetContact(), &u); err != nil || u.Host == "" {
		return nil, invalidField("contact", "%q is not a SIP URI", req.GetContact())
	}
	if err := s.regs.Remove(ctx, req.GetNumber(), req.GetContact()); err != nil {
		subject, key := dnSubject(req.GetNumber())
		return nil, subjectError("remove registration", "registration "+req.GetContact()+" of "+subject, key, err, "")
	}
	return &sipsvcv1.RemoveRegistrationResponse{}, nil
}

// storeRegistrations is the Registrations used when none is configured: it reads and deletes
// bindings in the store directly (no registrar events are published then).
type storeRegistrations struct{ store store.Store }

var _ Registrations = storeRegistrations{}

// List returns the DN's bindings; dn.ErrNotFound for an unknown DN.
func (r storeRegistrations) List(ctx context.Context, number string) ([]dn.Binding, error) {
	if _, err := r.store.Lookup(ctx, number); err != nil {
		return nil, err
	}
	return r.store.Bindings(ctx, number)
}

// Remove deletes the binding whose key matches contact.
func (r storeRegistrations) Remove(ctx context.Context, number, contact string) error {
	if _, err := r.store.Lookup(ctx, number); err != nil {
		return err
	}
	return r.store.DeleteBinding(ctx, number, dn.BindingKey(contact))
}

// requireType refuses a DN without a type, naming the values the API accepts (the domain's
// own message would name dn's Go values, which JSON clients cannot send).
func requireType(p *sipsvcv1.DN) error {
	if p.GetType() == sipsvcv1.DNType_DN_TYPE_UNSPECIFIED {
		return invalidField("dn.type", "is required: one of %s", enumNames(sipsvcv1.DNType(0).Descriptor()))
	}
	return nil
}

// maxDisplayNameLen bounds dn.display_name (bytes).
const maxDisplayNameLen = 128

// checkDisplayName refuses a display name that could not go into a SIP From as it is: it is
// written between quotes there, so a quote, a backslash or a control character (CR LF
// would start a new header) is refused, as is a name over maxDisplayNameLen bytes.
func checkDisplayName(v string) error {
	if len(v) > maxDisplayNameLen {
		return invalidField("dn.display_name", "is longer than %d bytes", maxDisplayNameLen)
	}
	for _, r := range v {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return invalidField("dn.display_name", "contains %q: quotes, backslashes and control characters cannot go into a SIP From", r)
		}
	}
	return nil
}
