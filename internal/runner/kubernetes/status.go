package kubernetes

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/spec"
)

// podView is what PodInstance needs besides the pod.
type podView struct {
	// EverReady: the runner saw this pod Ready before. A crash after that
	// is a restart (Kubernetes restarts it); before, a start failure.
	EverReady bool
	// Budget is how long the host may run without becoming ready before
	// the instance fails (readiness initial_delay + period × failure
	// threshold, as the local runner counts).
	Budget time.Duration
	// Unschedulable is how long a pod may wait for a node before it fails.
	Unschedulable time.Duration
	Now           time.Time
}

// readinessBudget is the local runner's rule: initial_delay + period ×
// failure_threshold of the readiness probe, default 310 s.
func readinessBudget(sp *spec.Deployment) time.Duration {
	if rp := sp.ReadinessProbe; rp != nil {
		return time.Duration(rp.InitialDelay+rp.Period*rp.FailureThreshold) * time.Second
	}
	return 310 * time.Second
}

// podInstance maps a pod to the reconciler's view: its phase from the pod's
// conditions and container states, a reason a user can act on, and the
// address (podIP:port) once Ready.
func podInstance(pod *corev1.Pod, v podView, port int32) reconcile.Instance {
	in := reconcile.Instance{
		ID:         pod.Name,
		Endpoint:   pod.Annotations[AnnEndpointName],
		Deployment: pod.Annotations[AnnDeploymentName],
		StartedAt:  pod.CreationTimestamp.UTC(),
		Phase:      reconcile.PhaseStarting,
	}
	if in.Endpoint == "" {
		in.Endpoint = pod.Labels[LabelEndpoint]
	}
	if in.Deployment == "" {
		in.Deployment = pod.Labels[LabelDeployment]
	}
	in.Generation, _ = strconv.ParseInt(pod.Labels[LabelGeneration], 10, 64)
	in.Phase, in.Reason = podPhase(pod, v)
	if host := hostStatus(pod); host != nil {
		in.Restarts = int(host.RestartCount)
	}
	if in.Phase == reconcile.PhaseReady && pod.Status.PodIP != "" {
		in.Addr = net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port)))
	}
	return in
}

func hostStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == ContainerHost {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func condition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func podPhase(pod *corev1.Pod, v podView) (reconcile.Phase, string) {
	if pod.DeletionTimestamp != nil {
		return reconcile.PhaseStopping, "pod is terminating"
	}
	switch pod.Status.Phase {
	case corev1.PodFailed:
		msg := pod.Status.Message
		if pod.Status.Reason == "Evicted" {
			return reconcile.PhaseFailed, "the pod was evicted by Kubernetes: " + msg
		}
		if t := terminated(hostStatus(pod)); t != nil {
			return reconcile.PhaseFailed, exitText(t)
		}
		return reconcile.PhaseFailed, strings.TrimSpace("the pod failed: " + pod.Status.Reason + " " + msg)
	case corev1.PodSucceeded:
		return reconcile.PhaseFailed, "the model host exited (code 0) and Kubernetes does not restart it"
	}
	if c := condition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse {
		reason := "waiting for a node with room for this instance: " + c.Message
		if c.Reason == corev1.PodReasonUnschedulable && v.Unschedulable > 0 && v.Now.Sub(c.LastTransitionTime.Time) > v.Unschedulable {
			return reconcile.PhaseFailed, fmt.Sprintf("no node could take this instance for %s: %s; choose a smaller instance_type (or resources), or add nodes to the cluster", v.Unschedulable, c.Message)
		}
		return reconcile.PhaseStarting, reason
	}
	// The storage-initializer copies moe and fetches the snapshot.
	for i := range pod.Status.InitContainerStatuses {
		cs := &pod.Status.InitContainerStatuses[i]
		if cs.Name != ContainerInit || cs.Ready {
			continue
		}
		if w := cs.State.Waiting; w != nil {
			if pullFailed(w.Reason) {
				return pullPhase(w, "moe's own image "+strconv.Quote(cs.Image)+" (the storage initializer): the cluster cannot pull it; check the moe image the control plane is configured with and the cluster's imagePullSecrets")
			}
			last := terminated(&corev1.ContainerStatus{LastTerminationState: cs.LastTerminationState})
			if w.Reason == "CrashLoopBackOff" {
				return reconcile.PhaseFailed, "the storage initializer could not fetch the model and code: " + initText(last) + "; check that pods can reach the control plane's API (its in-cluster URL) and see get-logs --container storage-initializer"
			}
			if bad := configError(w); bad != "" {
				return reconcile.PhaseFailed, bad
			}
			if last != nil {
				return reconcile.PhaseStarting, "storage initializer failed, retrying: " + initText(last)
			}
			if w.Reason != "" && w.Reason != "PodInitializing" {
				return reconcile.PhaseStarting, "preparing: " + w.Reason
			}
		}
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			return reconcile.PhaseStarting, "storage initializer failed, retrying: " + initText(t)
		}
		return reconcile.PhaseStarting, "fetching the model and code snapshot"
	}
	host := hostStatus(pod)
	ready := condition(pod, corev1.PodReady)
	if ready != nil && ready.Status == corev1.ConditionTrue && host != nil && host.State.Running != nil {
		return reconcile.PhaseReady, ""
	}
	if host == nil {
		return reconcile.PhaseStarting, "waiting for the pod to start"
	}
	last := terminated(&corev1.ContainerStatus{LastTerminationState: host.LastTerminationState})
	if w := host.State.Waiting; w != nil {
		if pullFailed(w.Reason) {
			return pullPhase(w, "environment.image "+strconv.Quote(host.Image)+": the cluster cannot pull it; check the image name and tag, that the registry is reachable from the cluster, and its credentials (imagePullSecrets)")
		}
		if bad := configError(w); bad != "" {
			return reconcile.PhaseFailed, bad
		}
		if w.Reason == "CrashLoopBackOff" {
			if v.EverReady {
				return reconcile.PhaseStarting, "restarting after: " + exitText(last)
			}
			return reconcile.PhaseFailed, "the model host keeps exiting before it is ready: " + exitText(last) + "; see get-logs"
		}
		if last != nil {
			return reconcile.PhaseStarting, "restarting after: " + exitText(last)
		}
		if w.Reason != "" && w.Reason != "ContainerCreating" {
			return reconcile.PhaseStarting, "starting: " + w.Reason
		}
		return reconcile.PhaseStarting, "starting the model host"
	}
	if t := host.State.Terminated; t != nil {
		if v.EverReady {
			return reconcile.PhaseStarting, "restarting after: " + exitText(t)
		}
		return reconcile.PhaseStarting, "model host exited, Kubernetes restarts it: " + exitText(t)
	}
	if r := host.State.Running; r != nil {
		if v.EverReady {
			msg := "readiness probe failing (GET /-/ready); out of rotation until it passes"
			if last != nil {
				msg = "restarting after: " + exitText(last)
			}
			return reconcile.PhaseStarting, msg
		}
		if v.Budget > 0 && v.Now.Sub(r.StartedAt.Time) > v.Budget {
			return reconcile.PhaseFailed, fmt.Sprintf("not ready after %s (readiness_probe initial_delay + period × failure_threshold); see get-logs", v.Budget)
		}
		if last != nil {
			return reconcile.PhaseStarting, "restarted after: " + exitText(last)
		}
		return reconcile.PhaseStarting, "loading the model (init())"
	}
	return reconcile.PhaseStarting, "starting the model host"
}

func pullFailed(reason string) bool {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "ErrImageInspect":
		return true
	}
	return false
}

// pullPhase: the first failed pull is retried (registries hiccup); from the
// back-off on, or for a name that can never work, the instance fails.
func pullPhase(w *corev1.ContainerStateWaiting, what string) (reconcile.Phase, string) {
	msg := "cannot pull " + what
	if w.Message != "" {
		msg += " (" + w.Reason + ": " + w.Message + ")"
	} else {
		msg += " (" + w.Reason + ")"
	}
	if w.Reason == "ErrImagePull" {
		return reconcile.PhaseStarting, "retrying: " + msg
	}
	return reconcile.PhaseFailed, msg
}

func configError(w *corev1.ContainerStateWaiting) string {
	switch w.Reason {
	case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
		return "Kubernetes cannot start the container (" + w.Reason + "): " + w.Message
	}
	return ""
}

func terminated(cs *corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	if cs == nil {
		return nil
	}
	if cs.State.Terminated != nil {
		return cs.State.Terminated
	}
	return cs.LastTerminationState.Terminated
}

// exitText explains a host container's exit.
func exitText(t *corev1.ContainerStateTerminated) string {
	if t == nil {
		return "the model host exited"
	}
	msg := strings.TrimSpace(t.Message)
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 && len(msg) > 500 {
		msg = "…" + msg[len(msg)-500:]
	}
	switch {
	case t.Reason == "OOMKilled":
		return "the model host ran out of memory (OOMKilled): it used more than its memory limit; choose a larger instance_type (or raise resources.limits.memory), or load less into memory"
	case t.ExitCode == 3:
		return "init() of the scoring script failed: " + orDefault(msg, "see get-logs")
	case t.ExitCode == 127 || strings.Contains(msg, "no such file or directory") && strings.Contains(msg, "python"):
		return fmt.Sprintf("the model host could not start (exit %d): %s; environment.image must provide Python (or set environment_variables.MOE_PYTHON to its path)", t.ExitCode, orDefault(msg, "command not found"))
	case msg != "":
		return fmt.Sprintf("the model host exited (code %d): %s", t.ExitCode, msg)
	case t.Signal != 0:
		return fmt.Sprintf("the model host was killed by signal %d (%s)", t.Signal, t.Reason)
	}
	return fmt.Sprintf("the model host exited (code %d, %s)", t.ExitCode, t.Reason)
}

func initText(t *corev1.ContainerStateTerminated) string {
	if t == nil {
		return "it exited"
	}
	if t.Reason == "OOMKilled" {
		return "it ran out of memory (OOMKilled)"
	}
	if msg := strings.TrimSpace(t.Message); msg != "" {
		return fmt.Sprintf("%s (exit %d)", msg, t.ExitCode)
	}
	return fmt.Sprintf("it exited with code %d (%s)", t.ExitCode, t.Reason)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
