package main

// `moe serve --runner kubernetes` and `--leader-elect`: the Kubernetes
// client, the runner of internal/runner/kubernetes, the per-deployment
// credential its storage initializers send to GET /v1/artifacts/{digest},
// and the Lease that picks the one replica whose reconciler runs.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/pki"
	"github.com/moe-serving/moe/internal/reconcile"
	k8srunner "github.com/moe-serving/moe/internal/runner/kubernetes"
	"github.com/moe-serving/moe/internal/store"
)

// kubeSettings are serve's Kubernetes flags and what they build.
type kubeSettings struct {
	kubeconfig      string
	namespace       string
	moeImage        string
	controlPlaneURL string
	controlPlaneCA  string // PEM file

	leaderElect   bool
	leaseName     string
	leaseNS       string
	identity      string
	leaseDuration time.Duration

	client  kubernetes.Interface
	runner  *k8srunner.Runner
	leading atomic.Bool
}

func (k *kubeSettings) flags(f *pflag.FlagSet) {
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file for --runner kubernetes and --leader-elect; default: the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config")
	f.StringVar(&k.namespace, "k8s-namespace", os.Getenv("MOE_K8S_NAMESPACE"), "--runner kubernetes: namespace of the model pods (env MOE_K8S_NAMESPACE)")
	f.StringVar(&k.moeImage, "k8s-moe-image", os.Getenv("MOE_K8S_MOE_IMAGE"), "--runner kubernetes: image with /moe, run by each model pod's init container (env MOE_K8S_MOE_IMAGE), e.g. ghcr.io/moe-serving/moe:<version>")
	f.StringVar(&k.controlPlaneURL, "k8s-control-plane-url", os.Getenv("MOE_K8S_CONTROL_PLANE_URL"), "--runner kubernetes: this API as model pods reach it, for snapshot downloads (env MOE_K8S_CONTROL_PLANE_URL), e.g. https://moe-control-plane.moe-system.svc:8442")
	f.StringVar(&k.controlPlaneCA, "k8s-control-plane-ca", os.Getenv("MOE_K8S_CONTROL_PLANE_CA"), "--runner kubernetes: PEM certificates model pods trust for that URL (env MOE_K8S_CONTROL_PLANE_CA); default: --tls-cert, else the data dir's CA")
	f.BoolVar(&k.leaderElect, "leader-elect", false, "several replicas share one store (PostgreSQL): only the holder of a Kubernetes Lease runs the reconciler; every replica serves the API and gateway")
	f.StringVar(&k.leaseName, "leader-elect-lease", "moe-control-plane", "name of the coordination.k8s.io Lease")
	f.StringVar(&k.leaseNS, "leader-elect-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the Lease (env POD_NAMESPACE); default: the pod's own namespace, else default")
	f.StringVar(&k.identity, "leader-elect-identity", os.Getenv("POD_NAME"), "this replica's name in the Lease (env POD_NAME); default: host name and a random suffix")
	f.DurationVar(&k.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a lease lasts without renewal: the longest a dead leader blocks the others (renewal every duration/6, given up after 2/3)")
}

// connect builds the Kubernetes client once.
func (k *kubeSettings) connect() error {
	if k.client != nil {
		return nil
	}
	var cfg *rest.Config
	var err error
	switch {
	case k.kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", k.kubeconfig)
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		cfg, err = rest.InClusterConfig()
	default:
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
	}
	if err != nil {
		return &usageError{msg: fmt.Sprintf("no Kubernetes configuration: %v", err), hint: "--kubeconfig FILE (or run in a pod with a service account)"}
	}
	cfg.UserAgent = "moe-control-plane"
	k.client, err = kubernetes.NewForConfig(cfg)
	return err
}

func (s *serveCmd) initKubernetesRunner() error {
	k := &s.kube
	var missing []string
	for _, f := range []struct{ flag, env, v string }{
		{"--k8s-namespace", "MOE_K8S_NAMESPACE", k.namespace},
		{"--k8s-moe-image", "MOE_K8S_MOE_IMAGE", k.moeImage},
		{"--k8s-control-plane-url", "MOE_K8S_CONTROL_PLANE_URL", k.controlPlaneURL},
	} {
		if f.v == "" {
			missing = append(missing, f.flag+" (env "+f.env+")")
		}
	}
	if len(missing) > 0 {
		return &usageError{msg: "--runner kubernetes needs " + strings.Join(missing, ", "),
			hint: "--runner kubernetes --k8s-namespace moe-models --k8s-moe-image ghcr.io/moe-serving/moe:latest --k8s-control-plane-url https://moe-control-plane.moe-system.svc:8442"}
	}
	caFile := k.controlPlaneCA
	if caFile == "" {
		caFile = s.tlsCert
	}
	if caFile == "" {
		caFile = filepath.Join(s.dir, "pki", pki.CACertFile)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("--k8s-control-plane-ca: %w", err)
	}
	if err := k.connect(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := k8srunner.New(ctx, k8srunner.Config{Client: k.client, Namespace: k.namespace, MoeImage: k.moeImage,
		ControlPlaneURL: k.controlPlaneURL, ControlPlaneCA: ca, Credential: issueCredential,
		Logger: s.logger.With("component", "runner")})
	if err != nil {
		return fmt.Errorf("kubernetes runner (namespace %s): %w", k.namespace, err)
	}
	k.runner, s.runner = r, r
	s.logger.Info("kubernetes runner", "namespace", k.namespace, "moe_image", k.moeImage, "control_plane_url", k.controlPlaneURL)
	return nil
}

// credentialPrefix starts every per-deployment credential:
// moe-dep.<endpoint>.<deployment>.<generation>.<random hex>. moe names
// hold no dots, so the names parse back; the random part is what proves
// it (compared with the copy in the generation's Secret).
const credentialPrefix = "moe-dep"

// issueCredential is the runner's Config.Credential.
func issueCredential(_ context.Context, endpoint, deployment string, generation int64) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s.%s.%s.%d.%s", credentialPrefix, endpoint, deployment, generation, hex.EncodeToString(b[:])), nil
}

// artifactAuth is api.Server.ArtifactAuth with the Kubernetes runner: a
// credential is valid while the Secret the runner stored it in holds it
// (the Secret goes with its generation's Deployment), and it opens only
// the snapshots of that generation, which must still be the deployment's
// desired or active revision. Any replica can check it: the Secret and the
// store are shared.
func (s *serveCmd) artifactAuth() func(token, digest string) bool {
	if s.kube.runner == nil {
		return nil
	}
	return func(token, digest string) bool {
		parts := strings.Split(token, ".")
		if len(parts) != 5 || parts[0] != credentialPrefix {
			return false
		}
		endpoint, deployment := parts[1], parts[2]
		gen, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		name := k8srunner.NamesFor(endpoint, deployment).Secret(gen)
		sec, err := s.kube.client.CoreV1().Secrets(s.kube.namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			s.logger.Info("artifact download refused: no credential Secret", "secret", name, "err", err)
			return false
		}
		if subtle.ConstantTimeCompare(sec.Data[k8srunner.CredentialKey], []byte(token)) != 1 {
			s.logger.Info("artifact download refused: credential does not match its Secret", "secret", name)
			return false
		}
		d, err := s.store.GetDeployment(ctx, endpoint, deployment)
		if err != nil {
			return false
		}
		for _, rev := range []*store.Revision{&d.Desired, d.Active} {
			if rev != nil && rev.Generation == gen && digest != "" &&
				(rev.Artifacts.Model == digest || rev.Artifacts.Code == digest || rev.Artifacts.Conda == digest) {
				return true
			}
		}
		s.logger.Info("artifact download refused: not a snapshot of the credential's revision", "endpoint", endpoint, "deployment", deployment, "generation", gen, "digest", digest)
		return false
	}
}

// initLeaderElection checks the --leader-elect settings.
func (s *serveCmd) initLeaderElection() error {
	k := &s.kube
	if !k.leaderElect {
		return nil
	}
	if s.storeURL == "" {
		s.logger.Warn("--leader-elect with the SQLite store: replicas only share state through a postgres:// --store")
	}
	if err := k.connect(); err != nil {
		return err
	}
	if k.leaseNS == "" {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			k.leaseNS = strings.TrimSpace(string(b))
		} else {
			k.leaseNS = "default"
		}
	}
	if k.identity == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		k.identity = host + "_" + hex.EncodeToString(b[:])
	}
	if k.leaseDuration < time.Second {
		return &usageError{msg: "--leader-elect-lease-duration must be at least 1s", hint: "--leader-elect-lease-duration 15s"}
	}
	return nil
}

// runReconciler runs the reconciler: always without --leader-elect; with
// it, only while this replica holds the Lease. Losing the lease (no
// renewal within 2/3 of its duration: API server unreachable, process
// paused) cancels the reconciler's context at once; the replica then
// campaigns again. Meanwhile followRoutes keeps this replica's gateway
// routing from the store. On shutdown the leader stops its reconciler,
// then releases the lease so another replica takes over without waiting.
func (s *serveCmd) runReconciler(ctx context.Context) error {
	k := &s.kube
	if !k.leaderElect {
		return s.recon.Run(ctx)
	}
	if s.gwLn != nil {
		go s.followRoutes(ctx)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: k.leaseName, Namespace: k.leaseNS},
		Client:     k.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: k.identity},
	}
	log := s.logger.With("component", "leader-election", "lease", k.leaseNS+"/"+k.leaseName, "identity", k.identity)
	d := k.leaseDuration
	for {
		done := make(chan struct{})
		var started atomic.Bool
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: k.leaseName,
			LeaseDuration: d, RenewDeadline: d * 2 / 3, RetryPeriod: max(d/6, 100*time.Millisecond),
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					started.Store(true)
					defer close(done)
					k.leading.Store(true)
					log.Info("leader election: this replica leads; reconciler started")
					if err := s.recon.Run(lctx); err != nil {
						log.Error("reconciler", "err", err)
					}
					k.leading.Store(false)
				},
				OnStoppedLeading: func() {},
				OnNewLeader: func(id string) {
					if id != k.identity {
						log.Info("leader election: following", "leader", id)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx)
		if started.Load() {
			<-done // the reconciler has returned
			if ctx.Err() != nil {
				releaseLease(lock, k.identity)
				log.Info("leader election: reconciler stopped, lease released")
				return nil
			}
			log.Warn("leader election: lost the lease; reconciler stopped; campaigning again")
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// releaseLease gives the lease up (what client-go's ReleaseOnCancel does,
// but after the reconciler has stopped, so two never overlap).
func releaseLease(lock *resourcelock.LeaseLock, identity string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, _, err := lock.Get(ctx)
	if err != nil || rec.HolderIdentity != identity {
		return
	}
	now := metav1.NewTime(time.Now())
	lock.Update(ctx, resourcelock.LeaderElectionRecord{LeaderTransitions: rec.LeaderTransitions,
		LeaseDurationSeconds: 1, RenewTime: now, AcquireTime: now})
}

// followRoutes keeps a non-leader's gateway routing: the route table from
// the shared store and the runner's view of the instances, each second and
// on every store change. The leader's reconciler publishes its own.
func (s *serveCmd) followRoutes(ctx context.Context) {
	changes, cancel := s.store.Subscribe()
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var prev *gateway.Table
	for {
		if s.kube.leading.Load() {
			prev = nil
		} else if err := func() error {
			eps, err := s.store.ListEndpoints(ctx)
			if err != nil {
				return err
			}
			deps, err := s.store.ListDeployments(ctx, "")
			if err != nil {
				return err
			}
			t, errs := reconcile.BuildRoutes(eps, deps, s.runner.Instances(), s.apiHandler.OpenKeys, prev)
			if !s.kube.leading.Load() {
				prev = t
				s.gw.SetRoutes(t)
			}
			return errors.Join(errs...)
		}(); err != nil && ctx.Err() == nil {
			s.logger.Debug("follower routes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-tick.C:
		}
	}
}
