package integration

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dockerInstruction is one instruction of a Dockerfile, continuation lines
// joined.
type dockerInstruction struct {
	// cmd is the instruction in upper case, e.g. RUN.
	cmd  string
	args string
	line int
}

// dockerStage is a build stage: a FROM and the instructions up to the next.
type dockerStage struct {
	base string
	// name is the stage's AS name, or "".
	name   string
	from   dockerInstruction
	instrs []dockerInstruction
}

// parseDockerfile splits a Dockerfile into stages. It knows comments,
// parser directives (comments too) and backslash continuations, which is
// all the Dockerfile uses; heredocs are refused.
func parseDockerfile(t testing.TB, file string) []dockerStage {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var stages []dockerStage
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		stages = addInstruction(t, stages, cur.String(), start)
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: the last instruction ends in a continuation", file)
	}
	return stages
}

// addInstruction appends one instruction, starting a stage at FROM.
func addInstruction(t testing.TB, stages []dockerStage, text string, line int) []dockerStage {
	t.Helper()
	cmd, args, _ := strings.Cut(text, " ")
	in := dockerInstruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: line}
	if strings.Contains(in.args, "<<") {
		t.Fatalf("line %d: heredocs are not understood by this test", line)
	}
	if in.cmd == "FROM" {
		f := withoutFlags(strings.Fields(in.args))
		st := dockerStage{from: in}
		if len(f) > 0 {
			st.base = f[0]
		}
		if len(f) == 3 && strings.EqualFold(f[1], "AS") {
			st.name = f[2]
		}
		return append(stages, st)
	}
	if len(stages) == 0 {
		if in.cmd != "ARG" {
			t.Fatalf("line %d: %s before the first FROM", line, in.cmd)
		}
		return stages
	}
	last := &stages[len(stages)-1]
	last.instrs = append(last.instrs, in)
	return stages
}

// withoutFlags drops the leading --flag=value words of an instruction.
func withoutFlags(words []string) []string {
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		words = words[1:]
	}
	return words
}

// of returns the stage's instructions of one kind.
func (s dockerStage) of(cmd string) []dockerInstruction {
	var out []dockerInstruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// goBuildRun returns the RUN instruction that runs go build, and its stage.
func goBuildRun(t testing.TB, stages []dockerStage) (dockerStage, dockerInstruction) {
	t.Helper()
	for _, s := range stages {
		for _, in := range s.of("RUN") {
			if strings.Contains(in.args, "go build") {
				return s, in
			}
		}
	}
	t.Fatal("no RUN instruction runs go build")
	return dockerStage{}, dockerInstruction{}
}

// pinnedImage matches an image reference with an explicit tag or digest.
var pinnedImage = regexp.MustCompile(`^[a-z0-9./_-]+(:[A-Za-z0-9._-]+)?(@sha256:[0-9a-f]{64})?$`)

// TestExampleDockerfile checks the Dockerfile statically, as no Docker
// engine is at hand: a multi-stage build of a static binary, base images
// pinned, nothing fetched with ADD, and a minimal final stage that runs
// the proxy as a numeric non-root user and exposes the metrics port.
func TestExampleDockerfile(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	names := map[string]bool{}
	for _, s := range stages {
		checkBaseImage(t, s, names)
		names[s.name] = true
		for _, in := range s.of("ADD") {
			if strings.Contains(in.args, "://") || strings.Contains(in.args, "git@") {
				t.Errorf("line %d: ADD of a remote source; fetch in a RUN you can "+
					"verify, or COPY", in.line)
			}
		}
	}

	build, run := goBuildRun(t, stages)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath"} {
		if !slices.Contains(strings.Fields(run.args), want) {
			t.Errorf("line %d: go build without %s", run.line, want)
		}
	}
	checkFinalStage(t, stages[len(stages)-1], build.name)
}

// checkBaseImage fails for a FROM whose image is neither a previous stage,
// scratch, nor pinned to a tag (not latest) or digest.
func checkBaseImage(t *testing.T, s dockerStage, stageNames map[string]bool) {
	t.Helper()
	img := s.base
	if stageNames[img] || img == "scratch" {
		return
	}
	repo := img[strings.LastIndex(img, "/")+1:]
	if !pinnedImage.MatchString(img) || !strings.ContainsAny(repo, ":@") ||
		strings.HasSuffix(repo, ":latest") {
		t.Errorf("line %d: FROM %s: pin the image by tag (not latest) or digest",
			s.from.line, img)
	}
}

// checkFinalStage checks the stage the image is made of: minimal base,
// the binary copied from the build stage as its entrypoint, a numeric
// non-root USER, and port 3081 exposed.
func checkFinalStage(t *testing.T, final dockerStage, buildStage string) {
	t.Helper()
	if final.base != "scratch" && !strings.HasPrefix(final.base, "gcr.io/distroless/static") {
		t.Errorf("final stage FROM %s: want scratch or distroless static", final.base)
	}
	if final.base == "scratch" {
		copies := strings.Join(argsOf(final.of("COPY")), " ")
		for _, want := range []string{"/etc/passwd", "/etc/ssl/certs"} {
			if !strings.Contains(copies, want) {
				t.Errorf("final stage FROM scratch copies no %s", want)
			}
		}
	}

	users := final.of("USER")
	if len(users) == 0 {
		t.Fatal("final stage: no USER, so the proxy would run as root")
	}
	user, _, _ := strings.Cut(users[len(users)-1].args, ":")
	if uid, err := strconv.Atoi(user); err != nil || uid == 0 {
		t.Errorf("final stage USER %q: want a numeric user other than 0, which "+
			"runAsNonRoot can verify", user)
	}

	var exposed []string
	for _, in := range final.of("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.args)...)
	}
	if !slices.Contains(exposed, "3081") && !slices.Contains(exposed, "3081/tcp") {
		t.Errorf("final stage exposes %v, want 3081", exposed)
	}

	entry := final.of("ENTRYPOINT")
	if len(entry) != 1 || !strings.HasPrefix(entry[0].args, `["`) {
		t.Fatalf("final stage: want one ENTRYPOINT in exec (JSON) form, got %v", entry)
	}
	bin, _, _ := strings.Cut(strings.TrimPrefix(entry[0].args, `["`), `"`)
	if !copiesFrom(final, buildStage, bin) {
		t.Errorf("ENTRYPOINT %s is not a file the final stage copies from stage %s",
			bin, buildStage)
	}
}

// argsOf returns the arguments of instructions.
func argsOf(ins []dockerInstruction) []string {
	var out []string
	for _, in := range ins {
		out = append(out, in.args)
	}
	return out
}

// copiesFrom reports whether a stage has a COPY --from=stage whose
// destination is dst.
func copiesFrom(s dockerStage, stage, dst string) bool {
	for _, in := range s.of("COPY") {
		w := strings.Fields(in.args)
		if slices.Contains(w, "--from="+stage) && len(w) > 0 && w[len(w)-1] == dst {
			return true
		}
	}
	return false
}

// TestExampleDockerfileBuildsStaticBinary runs the Dockerfile's go build
// command as written (its cache mounts aside) on this machine, for this
// machine's architecture, and checks what the image gets: static ELF
// files with no interpreter and no shared libraries, free of the build
// folder's path (-trimpath), carrying the VERSION build argument, and
// holding every file the later stages copy from the build output.
func TestExampleDockerfileBuildsStaticBinary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux; its binary is checked on linux only")
	}
	root := repoRoot(t)
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	build, run := goBuildRun(t, stages)

	words := withoutFlags(strings.Fields(run.args))
	outDir := flagValue(words, "-o")
	if !strings.HasSuffix(outDir, "/") {
		t.Fatalf("line %d: go build -o %q: want a folder (ending in /)", run.line, outDir)
	}
	tmp := t.TempDir()
	for i, w := range words {
		if w == outDir {
			words[i] = tmp + "/"
		}
	}

	cmd := exec.Command("sh", "-c", strings.Join(words, " "))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), buildArgEnv(build)...)
	cmd.Env = append(cmd.Env, "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH,
		"VERSION=examples-test", "PATH="+goBinDir()+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's go build: %v\n%s", err, out)
	}

	for _, s := range stages {
		for _, src := range copiedFrom(s, build.name) {
			rel, ok := strings.CutPrefix(src, outDir)
			if !ok {
				t.Errorf("stage %s copies %s, outside the build output %s", s.name, src, outDir)
				continue
			}
			checkStaticELF(t, filepath.Join(tmp, rel), root)
		}
	}
	out, err := exec.Command(filepath.Join(tmp, "mtls-metrics-proxy"), "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mtls-metrics-proxy examples-test") {
		t.Errorf("version of the built proxy: %v\n%s\nwant the VERSION build argument", err, out)
	}
}

// buildArgEnv returns the stage's ARG defaults as environment variables,
// as docker build sets them for RUN.
func buildArgEnv(s dockerStage) []string {
	var env []string
	for _, in := range s.of("ARG") {
		for _, w := range strings.Fields(in.args) {
			if strings.Contains(w, "=") {
				env = append(env, w)
			}
		}
	}
	return env
}

// goBinDir is the folder of the go command that built the test binaries.
func goBinDir() string {
	if p, err := exec.LookPath("go"); err == nil {
		return filepath.Dir(p)
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin")
}

// copiedFrom returns the sources of a stage's COPY --from=stage.
func copiedFrom(s dockerStage, stage string) []string {
	var out []string
	for _, in := range s.of("COPY") {
		w := strings.Fields(in.args)
		if slices.Contains(w, "--from="+stage) {
			w = withoutFlags(w)
			out = append(out, w[:len(w)-1]...)
		}
	}
	return out
}

// checkStaticELF fails unless file is an ELF executable that needs no
// dynamic loader or library, and holds no path of the build folder.
func checkStaticELF(t *testing.T, file, buildDir string) {
	t.Helper()
	f, err := elf.Open(file)
	if err != nil {
		t.Errorf("%s: %v", path.Base(file), err)
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: has a program interpreter: it is not static", path.Base(file))
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s: imports shared libraries %v (%v)", path.Base(file), libs, err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(buildDir+string(filepath.Separator))) {
		t.Errorf("%s: holds the build folder's path %s: built without -trimpath?",
			path.Base(file), buildDir)
	}
}

// TestExampleDockerignore checks that the .dockerignore keeps key material
// and local output out of the build context, and keeps in every file the
// build needs. It matches paths the way Docker does: patterns anchored at
// the context's root, * and ? within a path segment, ** across them, and
// a match on a folder excluding everything in it.
func TestExampleDockerignore(t *testing.T) {
	root := repoRoot(t)
	patterns := dockerignorePatterns(t, filepath.Join(root, ".dockerignore"))
	ignored := func(p string) bool {
		for dir := p; dir != "." && dir != "/"; dir = path.Dir(dir) {
			if slices.ContainsFunc(patterns, func(re *regexp.Regexp) bool {
				return re.MatchString(dir)
			}) {
				return true
			}
		}
		return false
	}

	for _, p := range []string{".git/config", "bin/mtls-metrics-proxy",
		"server-key.pem", "examples/compose/pki/server-key.pem", "pki/ca.pem"} {
		if !ignored(p) {
			t.Errorf("%s would be sent to the docker build", p)
		}
	}
	needed := buildInputs(t, root)
	if len(needed) < 3 {
		t.Fatalf("found only %v as build inputs", needed)
	}
	for _, p := range needed {
		if ignored(p) {
			t.Errorf("%s is needed by the build, and .dockerignore leaves it out", p)
		}
	}
}

// dockerignorePatterns compiles the patterns of a .dockerignore. Negated
// patterns (!) are refused: this test does not model them.
func dockerignorePatterns(t testing.TB, file string) []*regexp.Regexp {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []*regexp.Regexp
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore %q: exceptions are not modelled by this test", line)
		}
		out = append(out, dockerignoreRegexp(path.Clean(strings.TrimPrefix(line, "/"))))
	}
	return out
}

// dockerignoreRegexp turns one .dockerignore pattern into an anchored
// regular expression over slash-separated paths.
func dockerignoreRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch rest := pattern[i:]; {
		case strings.HasPrefix(rest, "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(rest, "**"):
			b.WriteString(".*")
			i++
		case rest[0] == '*':
			b.WriteString("[^/]*")
		case rest[0] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(rest[:1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// buildInputs lists, relative to root, the files the image's go build
// reads from the context: go.mod, go.sum, and the Go and embedded files
// of this module's packages that the two commands import.
func buildInputs(t testing.TB, root string) []string {
	t.Helper()
	tmpl := `{{if and .Module .Module.Main}}{{$d := .Dir}}` +
		`{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}` +
		`{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`
	cmd := exec.Command(filepath.Join(goBinDir(), "go"), "list", "-deps", "-f", tmpl,
		"./cmd/mtls-metrics-proxy", "./examples/diagd")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := []string{"go.mod", "go.sum"}
	for _, abs := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, abs)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	return files
}
