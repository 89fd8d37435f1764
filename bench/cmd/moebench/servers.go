package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // only in this bench harness: profiles of the in-process host and gateway
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/host"
	"github.com/moe-serving/moe/internal/logfile"
)

func writeAddr(file string, addr string) error {
	if file == "" {
		return nil
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(addr), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// servePprof serves net/http/pprof (DefaultServeMux) on loopback.
func servePprof(addrFile string) {
	if addrFile == "" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pprof:", err)
		return
	}
	writeAddr(addrFile, ln.Addr().String())
	go http.Serve(ln, http.DefaultServeMux)
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// fixedBody is the answer of the sklearn example for sample-request.json.
const fixedBody = `[11055.977245525679, 4503.079536107787]`

// cmdFixed: a Go net/http server answering a fixed body (the HTTP stack's
// ceiling).
func cmdFixed(args []string) error {
	fs := flag.NewFlagSet("fixed", flag.ExitOnError)
	addrFile := fs.String("addr-file", "", "write the bound address here")
	fs.Parse(args)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, fixedBody)
	}), ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := signalContext()
	defer cancel()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := writeAddr(*addrFile, ln.Addr().String()); err != nil {
		return err
	}
	err = srv.Serve(ln)
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}

// cmdHost runs moe's model host (internal/host, the code `moe host` runs)
// in this process, with net/http/pprof on a side port.
func cmdHost(args []string) error {
	fs := flag.NewFlagSet("host", flag.ExitOnError)
	var cfg host.Config
	pprofFile := fs.String("pprof-addr-file", "", "serve net/http/pprof and write its address here")
	fs.StringVar(&cfg.AddrFile, "addr-file", "", "write the bound address here")
	fs.StringVar(&cfg.CodeDir, "code-dir", ".", "scoring code folder")
	fs.StringVar(&cfg.ScoringScript, "scoring-script", "score.py", "entry script")
	fs.StringVar(&cfg.ModelDir, "model-dir", "", "AZUREML_MODEL_DIR")
	fs.StringVar(&cfg.Python, "python", "/usr/bin/python3", "Python interpreter")
	fs.IntVar(&cfg.Workers, "workers", 1, "workers")
	logFile := fs.String("log-file", "", "host log")
	fs.Parse(args)
	cfg.Addr = "127.0.0.1:0"
	var out, hostOut io.Writer = os.Stderr, os.Stderr
	if *logFile != "" {
		// The same writers `moe host --log-file` uses (internal/hostcmd):
		// a rotating file; the host's own lines batched every 100 ms.
		f, err := logfile.Open(*logFile, 10<<20, 3)
		if err != nil {
			return err
		}
		defer f.Close()
		b := logfile.NewBuffered(f, 100*time.Millisecond)
		defer b.Close()
		out, hostOut = f, b
	}
	cfg.Stderr = out
	cfg.Logger = slog.New(slog.NewTextHandler(hostOut, nil)).With("component", "host")
	servePprof(*pprofFile)
	ctx, cancel := signalContext()
	defer cancel()
	return host.Run(ctx, cfg)
}

// cmdGateway runs moe's gateway (internal/gateway, the code `moe serve`
// runs) in this process with the same route shape the control plane builds
// for the bench endpoint: key auth, traffic blue=100 with a 0 % green, and
// the instance given by -backend; TLS with moe's certificate. The access
// log goes to -log-file at Info, as `moe serve` writes it by default.
func cmdGateway(args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ExitOnError)
	addrFile := fs.String("addr-file", "", "write the bound address here")
	pprofFile := fs.String("pprof-addr-file", "", "serve net/http/pprof and write its address here")
	backend := fs.String("backend", "", "host:port of the model host")
	pkiDir := fs.String("pki", "", "moe's pki folder (server.pem, server-key.pem)")
	key := fs.String("key", "", "endpoint key")
	endpoint := fs.String("endpoint", "sk", "endpoint name")
	logFile := fs.String("log-file", os.DevNull, "access log")
	fs.Parse(args)
	cert, err := tls.LoadX509KeyPair(filepath.Join(*pkiDir, "server.pem"), filepath.Join(*pkiDir, "server-key.pem"))
	if err != nil {
		return err
	}
	lf, err := os.Create(*logFile)
	if err != nil {
		return err
	}
	defer lf.Close()
	// buffered like `moe serve` and `moe gateway` write their access log
	blf := logfile.NewBuffered(lf, 100*time.Millisecond)
	defer blf.Close()
	gw := gateway.New(gateway.Config{Logger: slog.New(slog.NewTextHandler(blf, nil)).With("component", "gateway")})
	dep := func(name string) *gateway.Deployment {
		return &gateway.Deployment{Name: name, RequestTimeout: 60 * time.Second, MaxConcurrentPerInstance: 1000,
			Instances: []*gateway.Instance{{ID: name + "-0", Addr: *backend}}}
	}
	ep := strings.ToLower(*endpoint)
	gw.SetRoutes(&gateway.Table{Endpoints: map[string]*gateway.Endpoint{ep: {
		Name: ep, AuthMode: "key", PrimaryKey: auth.Secret(*key), SecondaryKey: auth.Secret(*key + "-secondary"),
		Traffic:     []gateway.Weight{{Deployment: "blue", Percent: 100}},
		Deployments: map[string]*gateway.Deployment{"blue": dep("blue"), "green": dep("green")},
	}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	servePprof(*pprofFile)
	ctx, cancel := signalContext()
	defer cancel()
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		gw.Shutdown(sctx)
	}()
	if err := writeAddr(*addrFile, ln.Addr().String()); err != nil {
		return err
	}
	err = gw.Serve(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}
