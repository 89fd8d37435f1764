package local

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/spec"
)

// watch probes a ready instance until exited closes or ctx ends. Readiness
// (GET /-/ready) failing failure_threshold times in a row takes the
// instance out of rotation until it passes success_threshold times;
// liveness (GET /) failing failure_threshold times kills the process, which
// supervise then restarts with backoff.
func (r *Runner) watch(ctx context.Context, p *proc, addr string, exited <-chan struct{}, kill func()) {
	sp := p.spec.Revision.Spec
	rp, lp := sp.ReadinessProbe, sp.LivenessProbe
	if rp == nil {
		rp = spec.DefaultProbe()
	}
	if lp == nil {
		lp = spec.DefaultProbe()
	}
	readyT := time.NewTicker(time.Duration(rp.Period) * time.Second)
	defer readyT.Stop()
	liveT := time.NewTicker(time.Duration(lp.Period) * time.Second)
	defer liveT.Stop()
	var readyFails, readyOK, liveFails int
	ready := true
	for {
		select {
		case <-exited:
			return
		case <-ctx.Done():
			return
		case <-readyT.C:
			err := r.probe(ctx, "http://"+addr+"/-/ready", time.Duration(rp.Timeout)*time.Second)
			if err != nil {
				readyOK = 0
				readyFails++
				if ready && readyFails >= rp.FailureThreshold {
					ready = false
					r.setState(p, func(st *reconcile.Instance) {
						st.Phase, st.Reason = reconcile.PhaseStarting, fmt.Sprintf("readiness probe failed %d times: %v", readyFails, err)
					})
				}
				continue
			}
			readyFails = 0
			readyOK++
			if !ready && readyOK >= rp.SuccessThreshold {
				ready = true
				r.setState(p, func(st *reconcile.Instance) { st.Phase, st.Reason = reconcile.PhaseReady, "" })
			}
		case <-liveT.C:
			if err := r.probe(ctx, "http://"+addr+"/", time.Duration(lp.Timeout)*time.Second); err != nil {
				liveFails++
				if liveFails >= lp.FailureThreshold {
					r.Logger.Warn("liveness probe failed; restarting instance", "endpoint", p.spec.Endpoint, "deployment", p.spec.Deployment, "instance", p.spec.ID, "failures", liveFails, "err", err)
					kill()
					return
				}
				continue
			}
			liveFails = 0
		}
	}
}

func (r *Runner) probe(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
