package config

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CredentialsFile is the file in DataDir that keeps the generated DN passwords, one
// "number password" line each, mode 0600.
const CredentialsFile = "credentials.txt"

// credentialsHeader opens a new credentials file.
const credentialsHeader = "# sipsvc: generated digest passwords of self-registered DNs (generate_password).\n" +
	"# One \"number password\" per line. Keep this file secret; delete a line to get a new password.\n"

// GeneratePasswords gives every DN with GeneratePassword a password: the one kept in
// DataDir/CredentialsFile when there is one, else a new random one, which it adds to that
// file (created with mode 0600; a file that others may read is refused). It returns the
// file's path and the numbers given a new password; path is empty when no DN asks for a
// generated password. The passwords never go to the log: read them from the file.
func (c *Config) GeneratePasswords() (path string, created []string, err error) {
	want := false
	for _, d := range c.DNs {
		want = want || (d.GeneratePassword && d.Password == "")
	}
	if !want {
		return "", nil, nil
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("data_dir %s: %w", c.DataDir, err)
	}
	path = filepath.Join(c.DataDir, CredentialsFile)
	kept, err := readCredentials(path)
	if err != nil {
		return path, nil, err
	}
	var add bytes.Buffer
	if len(kept) == 0 {
		add.WriteString(credentialsHeader)
	}
	for i := range c.DNs {
		d := &c.DNs[i]
		if !d.GeneratePassword || d.Password != "" {
			continue
		}
		if pw, ok := kept[d.Number]; ok {
			d.Password = pw
			continue
		}
		pw, err := newPassword()
		if err != nil {
			return path, nil, err
		}
		d.Password = pw
		fmt.Fprintf(&add, "%s %s\n", d.Number, pw)
		created = append(created, d.Number)
	}
	if len(created) == 0 {
		return path, nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return path, nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return path, nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	if _, err := f.Write(add.Bytes()); err != nil {
		f.Close()
		return path, nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return path, nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	return path, created, nil
}

// readCredentials reads a credentials file; a missing file is empty. A file that group or
// others may read is refused: its passwords may be known.
func readCredentials(path string) (map[string]string, error) {
	out := map[string]string{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("credentials %s: mode %v lets others read the passwords: chmod 600 it, or delete it to generate new ones", path, st.Mode().Perm())
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		number, pw, ok := strings.Cut(line, " ")
		pw = strings.TrimSpace(pw)
		if !ok || number == "" || pw == "" {
			return nil, fmt.Errorf("credentials %s line %d: want \"number password\"", path, n)
		}
		out[number] = pw
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	return out, nil
}

// newPassword returns 120 random bits as 24 lower-case base32 characters: easy to type
// into a phone, no characters that need quoting.
func newPassword() (string, error) {
	b := make([]byte, 15)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.EncodeToString(b)), nil
}
