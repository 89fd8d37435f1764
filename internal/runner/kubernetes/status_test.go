package kubernetes

// Pure unit tests of the pod → instance mapping: a table of pod statuses as
// a kubelet would write them. cluster_test.go writes the same statuses to a
// real API server and checks they reach Instances through the informers.

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moe-serving/moe/internal/reconcile"
)

func basePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p1", Labels: map[string]string{LabelEndpoint: "ep", LabelDeployment: "blue", LabelGeneration: "3"},
			Annotations: map[string]string{AnnEndpointName: "EP", AnnDeploymentName: "Blue"}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, PodIP: "10.244.0.7",
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}},
	}
}

func waiting(reason, msg string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
}

func TestPodInstance(t *testing.T) {
	now := time.Now()
	initDone := corev1.ContainerStatus{Name: ContainerInit, Ready: true, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}}
	host := func(st corev1.ContainerState, last *corev1.ContainerStateTerminated, restarts int32) func(p *corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{initDone}
			cs := corev1.ContainerStatus{Name: ContainerHost, Image: "example.invalid/model:1", State: st, RestartCount: restarts}
			if last != nil {
				cs.LastTerminationState.Terminated = last
			}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
		}
	}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(now.Add(-time.Minute))}}
	ready := func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
	}
	oom := &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}
	initErr := &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error", Message: "init() failed: ModuleNotFoundError: No module named 'sklearn'"}
	for _, tc := range []struct {
		name      string
		mut       []func(*corev1.Pod)
		everReady bool
		phase     reconcile.Phase
		reason    string // substring
		addr      string
	}{
		{name: "ready", mut: []func(*corev1.Pod){host(running, nil, 0), ready}, phase: reconcile.PhaseReady, addr: "10.244.0.7:5001"},
		{name: "unschedulable, fresh", mut: []func(*corev1.Pod){func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
				Message: "0/3 nodes are available: 3 Insufficient cpu.", LastTransitionTime: metav1.NewTime(now)}}
		}}, phase: reconcile.PhaseStarting, reason: "waiting for a node with room for this instance: 0/3 nodes are available: 3 Insufficient cpu."},
		{name: "unschedulable, too long", mut: []func(*corev1.Pod){func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
				Message: "0/3 nodes are available: 3 Insufficient memory.", LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}}
		}}, phase: reconcile.PhaseFailed, reason: "choose a smaller instance_type"},
		{name: "init running", mut: []func(*corev1.Pod){func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: ContainerInit, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		}}, phase: reconcile.PhaseStarting, reason: "fetching the model and code"},
		{name: "init image pull backoff", mut: []func(*corev1.Pod){func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: ContainerInit, Image: "registry.example/moe:9", State: waiting("ImagePullBackOff", `Back-off pulling image "registry.example/moe:9"`)}}
		}}, phase: reconcile.PhaseFailed, reason: `cannot pull moe's own image "registry.example/moe:9"`},
		{name: "init failed once", mut: []func(*corev1.Pod){func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: ContainerInit, RestartCount: 1, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "GET /v1/artifacts/sha256:aa: connection refused"}}}}
		}}, phase: reconcile.PhaseStarting, reason: "fetching"},
		{name: "init crash loop", mut: []func(*corev1.Pod){func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: ContainerInit, RestartCount: 3, State: waiting("CrashLoopBackOff", "back-off 40s"),
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "GET /v1/artifacts/sha256:aa: 401 Unauthorized"}}}}
		}}, phase: reconcile.PhaseFailed, reason: "could not fetch the model and code: GET /v1/artifacts/sha256:aa: 401 Unauthorized (exit 1)"},
		{name: "host image pull, first try", mut: []func(*corev1.Pod){host(waiting("ErrImagePull", "not found"), nil, 0)}, phase: reconcile.PhaseStarting, reason: "retrying: cannot pull environment.image"},
		{name: "host image pull backoff", mut: []func(*corev1.Pod){host(waiting("ImagePullBackOff", "not found"), nil, 0)}, phase: reconcile.PhaseFailed, reason: `cannot pull environment.image "example.invalid/model:1"`},
		{name: "invalid image name", mut: []func(*corev1.Pod){host(waiting("InvalidImageName", "bad"), nil, 0)}, phase: reconcile.PhaseFailed, reason: "check the image name"},
		{name: "crash loop before ready: init()", mut: []func(*corev1.Pod){host(waiting("CrashLoopBackOff", ""), initErr, 2)}, phase: reconcile.PhaseFailed, reason: "init() of the scoring script failed: init() failed: ModuleNotFoundError"},
		{name: "crash loop after ready", everReady: true, mut: []func(*corev1.Pod){host(waiting("CrashLoopBackOff", ""), initErr, 2)}, phase: reconcile.PhaseStarting, reason: "restarting after: init()"},
		{name: "oom before ready", mut: []func(*corev1.Pod){host(waiting("CrashLoopBackOff", ""), oom, 1)}, phase: reconcile.PhaseFailed, reason: "ran out of memory (OOMKilled)"},
		{name: "oom after ready, running again", everReady: true, mut: []func(*corev1.Pod){host(running, oom, 1)}, phase: reconcile.PhaseStarting, reason: "OOMKilled"},
		{name: "config error", mut: []func(*corev1.Pod){host(waiting("CreateContainerConfigError", `secret "x" not found`), nil, 0)}, phase: reconcile.PhaseFailed, reason: "CreateContainerConfigError"},
		{name: "running, not ready yet", mut: []func(*corev1.Pod){host(running, nil, 0)}, phase: reconcile.PhaseStarting, reason: "loading the model"},
		{name: "running, never ready past budget", mut: []func(*corev1.Pod){host(corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(now.Add(-time.Hour))}}, nil, 0)}, phase: reconcile.PhaseFailed, reason: "not ready after 5m10s"},
		{name: "evicted", mut: []func(*corev1.Pod){func(p *corev1.Pod) {
			p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Evicted", "The node was low on resource: memory."
		}}, phase: reconcile.PhaseFailed, reason: "evicted"},
		{name: "terminating", mut: []func(*corev1.Pod){host(running, nil, 0), ready, func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: now} }}, phase: reconcile.PhaseStopping},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := basePod()
			for _, m := range tc.mut {
				m(p)
			}
			in := podInstance(p, podView{EverReady: tc.everReady, Budget: 310 * time.Second, Unschedulable: 10 * time.Minute, Now: now}, 5001)
			if in.Phase != tc.phase || !strings.Contains(in.Reason, tc.reason) || in.Addr != tc.addr {
				t.Errorf("got %s %q addr %q; want %s with %q addr %q", in.Phase, in.Reason, in.Addr, tc.phase, tc.reason, tc.addr)
			}
			if in.Endpoint != "EP" || in.Deployment != "Blue" || in.Generation != 3 || in.ID != "p1" {
				t.Errorf("identity %+v", in)
			}
		})
	}
}
