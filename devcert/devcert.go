// Package devcert makes the development TLS material sipsvc uses when no certificate is
// configured: a private CA and a server certificate signed by it, written once into the data
// directory and reused on later runs. Tests use Generate for throw-away pairs.
package devcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Pair is a CA and a leaf certificate signed by it, PEM-encoded.
type Pair struct {
	CAPEM   []byte
	CertPEM []byte
	KeyPEM  []byte
}

// Generate makes a CA and a leaf for the given hosts (IPs or DNS names). The leaf is valid
// for server and client authentication. commonName names the leaf's subject.
func Generate(commonName string, hosts []string) (Pair, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("ca key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "sipsvc dev CA", Organization: []string{"sipsvc"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Pair{}, fmt.Errorf("ca cert: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("leaf key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"sipsvc"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return Pair{}, fmt.Errorf("leaf cert: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Pair{}, fmt.Errorf("leaf key: %w", err)
	}
	return Pair{
		CAPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

// TLSCertificate parses the leaf pair.
func (p Pair) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(p.CertPEM, p.KeyPEM)
}

// Pool returns a pool holding the CA.
func (p Pair) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CAPEM)
	return pool
}

// Files are the paths of the dev material in a data directory.
type Files struct {
	CA, Cert, Key string
	// Fingerprint is the SHA-256 of the leaf certificate, hex with colons.
	Fingerprint string
	// Created is true when this call generated the files.
	Created bool
}

// Ensure returns the dev CA and server pair in dir, generating them on first use.
func Ensure(dir string, hosts []string) (Files, error) {
	f := Files{
		CA:   filepath.Join(dir, "tls", "dev-ca.pem"),
		Cert: filepath.Join(dir, "tls", "dev-server.pem"),
		Key:  filepath.Join(dir, "tls", "dev-server-key.pem"),
	}
	if _, err := os.Stat(f.Cert); errors.Is(err, os.ErrNotExist) {
		p, err := Generate("sipsvc dev server", hosts)
		if err != nil {
			return f, err
		}
		if err := os.MkdirAll(filepath.Dir(f.Cert), 0o700); err != nil {
			return f, fmt.Errorf("dev tls dir: %w", err)
		}
		for _, w := range []struct {
			path string
			b    []byte
			mode os.FileMode
		}{{f.CA, p.CAPEM, 0o644}, {f.Cert, p.CertPEM, 0o644}, {f.Key, p.KeyPEM, 0o600}} {
			if err := os.WriteFile(w.path, w.b, w.mode); err != nil {
				return f, fmt.Errorf("write %s: %w", w.path, err)
			}
		}
		f.Created = true
	} else if err != nil {
		return f, fmt.Errorf("stat %s: %w", f.Cert, err)
	}
	b, err := os.ReadFile(f.Cert)
	if err != nil {
		return f, fmt.Errorf("read %s: %w", f.Cert, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return f, fmt.Errorf("%s: no PEM certificate", f.Cert)
	}
	f.Fingerprint = Fingerprint(blk.Bytes)
	return f, nil
}

// Fingerprint formats the SHA-256 of a DER certificate as AA:BB:….
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
