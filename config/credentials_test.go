package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sipsvc/sipsvc/dn"
)

// TestGeneratePasswords (issue 10): the embedded self-registered DNs get random passwords
// on first start, written to data_dir/credentials.txt with mode 0600; a restart reads the
// same ones back; a DN added later gets its own; a file others may read is refused.
func TestGeneratePasswords(t *testing.T) {
	c := Default()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	path, created, err := c.GeneratePasswords()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(c.DataDir, CredentialsFile); path != want {
		t.Fatalf("path %s, want %s", path, want)
	}
	if strings.Join(created, ",") != "1000,1001" {
		t.Fatalf("created %v, want 1000,1001", created)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	pw := regexp.MustCompile(`^[a-z2-7]{24}$`)
	first := map[string]string{}
	for _, d := range c.DNs[:2] {
		if !pw.MatchString(d.Password) {
			t.Fatalf("DN %s password %q: want 24 base32 characters", d.Number, d.Password)
		}
		first[d.Number] = d.Password
	}
	if first["1000"] == first["1001"] {
		t.Fatal("two DNs got the same password")
	}
	for _, d := range c.SeedDNs()[:2] {
		if !d.HasPassword() {
			t.Fatalf("seeded DN %s has no password", d.Number)
		}
	}

	// A restart reads the same passwords; a new generate_password DN gets its own line.
	again := Default()
	again.DataDir = c.DataDir
	again.DNs = append(again.DNs, DNConfig{DN: dn.DN{Number: "1002", Type: dn.TypeExtension, Contact: "*"}, GeneratePassword: true})
	_, created, err = again.GeneratePasswords()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(created, ",") != "1002" {
		t.Fatalf("second start created %v, want only 1002", created)
	}
	if again.DNs[0].Password != first["1000"] || again.DNs[1].Password != first["1001"] {
		t.Fatal("a restart changed the generated passwords")
	}
	b, _ := os.ReadFile(path)
	for n, p := range first {
		if !strings.Contains(string(b), n+" "+p+"\n") {
			t.Fatalf("file lacks %s's password:\n%s", n, b)
		}
	}

	// A file that others may read is refused, naming the file.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Default().withDataDir(c.DataDir).GeneratePasswords(); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v, want one naming %s", err, path)
	}

	// No DN asks: no file.
	none := Default()
	none.DataDir = filepath.Join(t.TempDir(), "none")
	none.DNs = none.DNs[2:]
	if path, _, err := none.GeneratePasswords(); err != nil || path != "" {
		t.Fatalf("path %q err %v, want no file", path, err)
	}
	if _, err := os.Stat(none.DataDir); !os.IsNotExist(err) {
		t.Fatal("data_dir created for nothing")
	}
}

func (c Config) withDataDir(d string) *Config {
	c.DataDir = d
	return &c
}

// TestLoadOpenRegistration: registrar.open_registration is the documented opt-in that
// lets a self-registered DN go without a password (bad_dn_self_registered_no_password.yaml
// is the same DN refused without it).
func TestLoadOpenRegistration(t *testing.T) {
	c, err := Load(testdata("open_registration.yaml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Registrar.OpenRegistration || c.DNs[0].Password != "" || c.SeedDNs()[0].HasPassword() {
		t.Fatalf("registrar %+v dns %+v", c.Registrar, c.DNs)
	}
}
