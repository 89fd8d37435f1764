package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/sku"
)

// savedState is what a running instance leaves in its folder so the next
// server can adopt it after a crash (instances/<id>/state.json, 0600: the
// environment may hold the deployment's secrets).
type savedState struct {
	Spec reconcile.InstanceSpec `json:"spec"`
	PID  int                    `json:"pid"`
	Addr string                 `json:"addr"`
	Args []string               `json:"args"`
	Env  []string               `json:"env"`
}

func (r *Runner) save(p *proc, st savedState) {
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	path := filepath.Join(r.Dir, "instances", p.spec.ID, "state.json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		os.Rename(tmp, path)
	}
}

func (r *Runner) touchLease(id string) {
	path := filepath.Join(r.Dir, "instances", id, "lease")
	now := time.Now()
	if err := os.Chtimes(path, now, now); errors.Is(err, os.ErrNotExist) {
		os.WriteFile(path, nil, 0o600)
	}
}

// renewLeases tells every host that its server is alive. A host whose
// lease goes stale for LeaseTimeout (its server crashed and nobody adopted
// it) exits on its own.
func (r *Runner) renewLeases() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		ids := make([]string, 0, len(r.instances))
		for id := range r.instances {
			ids = append(ids, id)
		}
		r.mu.Unlock()
		for _, id := range ids {
			r.touchLease(id)
		}
	}
}

// limit applies the instance type's CPU and memory to a host process.
func (r *Runner) limit(p *proc, pid int) {
	s, ok := sku.Lookup(p.spec.Revision.Spec.InstanceType)
	if !ok || r.Cgroups == nil {
		return
	}
	desc, err := r.Cgroups.Apply(p.spec.ID, pid, s)
	if err != nil {
		desc = "advisory: " + err.Error()
	}
	r.setState(p, func(st *reconcile.Instance) { st.Resources = desc })
}

// Recover adopts hosts left running by a previous server (after kill -9 or
// a crash) that still answer ready, so their models need not load again;
// folders of dead instances are removed. Call it before the reconciler
// starts: adopted instances then count as running.
func (r *Runner) Recover(ctx context.Context) (adopted int) {
	r.init()
	root := filepath.Join(r.Dir, "instances")
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, "state.json"))
		var st savedState
		if err != nil || json.Unmarshal(b, &st) != nil || st.Spec.ID != e.Name() || !r.alive(st) {
			if st.PID > 0 && r.isOurHost(st.PID) {
				syscall.Kill(st.PID, syscall.SIGTERM) // alive but not ready: start afresh
			}
			os.RemoveAll(dir)
			continue
		}
		pctx, cancel := context.WithCancel(r.ctx)
		s := st.Spec
		p := &proc{spec: s, cancel: cancel, done: make(chan struct{}), pid: st.PID, adopted: &st, state: reconcile.Instance{
			ID: s.ID, Endpoint: s.Endpoint, Deployment: s.Deployment, Generation: s.Revision.Generation,
			Phase: reconcile.PhaseReady, Addr: st.Addr, StartedAt: time.Now().UTC(), Adopted: true,
		}}
		r.mu.Lock()
		r.instances[s.ID] = p
		r.mu.Unlock()
		r.touchLease(s.ID)
		r.limit(p, st.PID)
		r.Logger.Info("adopted running instance", "endpoint", s.Endpoint, "deployment", s.Deployment, "instance", s.ID, "pid", st.PID, "addr", st.Addr)
		r.wg.Go(func() {
			defer close(p.done)
			r.supervise(pctx, p)
		})
		adopted++
	}
	if adopted > 0 {
		r.notify()
	}
	return adopted
}

// isOurHost reports whether pid runs `moe host` (not a recycled pid).
func (r *Runner) isOurHost(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	return len(args) > 1 && (args[1] == "host" || filepath.Base(args[0]) == "moe-host")
}

func (r *Runner) alive(st savedState) bool {
	if st.PID <= 0 || syscall.Kill(st.PID, 0) != nil || !r.isOurHost(st.PID) {
		return false
	}
	resp, err := r.client.Get("http://" + st.Addr + "/-/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// watchAdopted probes an adopted host (not our child: no Wait) until it
// exits, polling its pid.
func (r *Runner) watchAdopted(ctx context.Context, p *proc, st *savedState) error {
	exited := make(chan struct{})
	r.mu.Lock()
	p.exited = exited
	r.mu.Unlock()
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if syscall.Kill(st.PID, 0) != nil || !r.isOurHost(st.PID) {
				close(exited)
				return
			}
		}
	}()
	r.watch(ctx, p, st.Addr, exited, func() { syscall.Kill(st.PID, syscall.SIGKILL) })
	select {
	case <-exited:
		return errors.New("adopted model host exited")
	case <-ctx.Done():
		return ctx.Err()
	}
}
