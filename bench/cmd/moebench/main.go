// Command moebench measures moe against its baselines in one session on
// one machine: the Flask + gunicorn server that follows the Azure inference
// server's design, nginx as TLS reverse proxy, run() in a loop, and a Go
// handler with a fixed body. It writes BENCHMARKS.md and plots under
// bench/results/. Run it through bench/run, which installs what it needs
// and builds moe first.
//
//	moebench run [-quick]        every scenario and baseline, then the report
//	moebench report              re-render BENCHMARKS.md and plots from results.json
//	moebench load URL ...        the load generator alone (open or closed loop)
//	moebench fixed|host|gateway  helper servers the session starts
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: moebench run|report|load|fixed|host|gateway [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(os.Args[2:])
	case "report":
		err = cmdReport(os.Args[2:])
	case "load":
		err = cmdLoad(os.Args[2:])
	case "fixed":
		err = cmdFixed(os.Args[2:])
	case "host":
		err = cmdHost(os.Args[2:])
	case "gateway":
		err = cmdGateway(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "moebench:", err)
		os.Exit(1)
	}
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	repo := fs.String("repo", ".", "repository root")
	moe := fs.String("moe", "bench/.work/bin/moe", "moe binary")
	py := fs.String("python", "/usr/bin/python3", "Python with scikit-learn and flask")
	quick := fs.Bool("quick", false, "short runs (smoke test of the harness; figures are not meaningful)")
	rev := fs.String("rev", "", "what moe build is measured (for the report)")
	fs.Parse(args)
	root, _ := filepath.Abs(*repo)
	self, _ := os.Executable()
	moeBin, _ := filepath.Abs(*moe)
	work := filepath.Join(root, "bench", ".work", "run")
	os.RemoveAll(work)
	os.MkdirAll(work, 0o755)
	os.MkdirAll(filepath.Join(root, "bench", "results"), 0o755)
	b := &Bench{Repo: root, Work: work, Moe: moeBin, Self: self, Py: *py, Quick: *quick, Rev: *rev}
	b.log, _ = os.Create(filepath.Join(root, "bench", "results", "session.log"))
	t0 := time.Now()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		b.logf("%s: stopping every process the session started", s)
		b.stopAll()
		os.Exit(130)
	}()
	func() {
		defer func() {
			if r := recover(); r != nil {
				b.stopAll()
				panic(r)
			}
		}()
		b.Main()
	}()
	b.logf("session took %s", time.Since(t0).Round(time.Second))
	bs, _ := json.MarshalIndent(b.R, "", " ")
	if err := os.WriteFile(filepath.Join(root, "bench", "results", "results.json"), bs, 0o644); err != nil {
		return err
	}
	return render(root, b.R)
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	repo := fs.String("repo", ".", "repository root")
	fs.Parse(args)
	root, _ := filepath.Abs(*repo)
	bs, err := os.ReadFile(filepath.Join(root, "bench", "results", "results.json"))
	if err != nil {
		return err
	}
	var r Results
	if err := json.Unmarshal(bs, &r); err != nil {
		return err
	}
	return render(root, &r)
}

// cmdLoad is the load generator on its own.
func cmdLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	rate := fs.Float64("rate", 0, "open loop at this many requests/s (0: closed loop)")
	conc := fs.Int("c", 8, "closed loop: concurrent clients; open loop: max in flight")
	dur := fs.Duration("d", 5*time.Second, "duration (bounded to 60 s)")
	body := fs.String("body", sampleBody, "request body (@file reads a file)")
	hdrs := fs.String("H", "", "headers, 'K: V' separated by ';'")
	caFile := fs.String("cacert", "", "CA certificate (PEM) for https")
	addr := fs.String("addr", "", "dial this host:port (default: the URL's)")
	fs.Parse(args)
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: moebench load [flags] URL")
	}
	t := &Target{Name: "load", URL: fs.Arg(0), Addr: *addr, Headers: map[string]string{}}
	if t.Addr == "" {
		u := strings.TrimPrefix(strings.TrimPrefix(t.URL, "https://"), "http://")
		t.Addr, _, _ = strings.Cut(u, "/")
	}
	if !strings.HasPrefix(t.Addr, "127.") && !strings.HasPrefix(t.Addr, "localhost") && !strings.HasPrefix(t.Addr, "[::1]") {
		return fmt.Errorf("loopback only: %s", t.Addr)
	}
	t.Body = []byte(*body)
	if strings.HasPrefix(*body, "@") {
		bs, err := os.ReadFile((*body)[1:])
		if err != nil {
			return err
		}
		t.Body = bs
	}
	for _, h := range strings.Split(*hdrs, ";") {
		if k, v, ok := strings.Cut(h, ":"); ok {
			t.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if *caFile != "" {
		b := &Bench{}
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		_ = b
		t.CA = poolFromPEM(pem)
	}
	d := min(*dur, time.Minute)
	var r Run
	if *rate > 0 {
		r = Open(t, *rate, 500*time.Millisecond, d, *conc)
	} else {
		r = Closed(t, *conc, 300*time.Millisecond, d, 10_000_000)
	}
	r.CDF = nil
	bs, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(bs))
	return nil
}
