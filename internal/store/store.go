// Package store defines moe's persistent state and the Store contract that
// its implementations (sqlite, postgres) satisfy; storetest holds the
// conformance suite every implementation must pass.
package store

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/moe-serving/moe/internal/spec"
)

// Sentinel errors; implementations wrap them with the name of the thing.
var (
	ErrNotFound = errors.New("store: not found")
	ErrConflict = errors.New("store: conflict")
	// ErrDigestMismatch is returned by Blobs.PutBlob when the bytes do not
	// hash to the digest they were stored under; nothing is stored.
	ErrDigestMismatch = errors.New("store: content does not match its digest")
)

// Endpoint is a stored endpoint: its spec, sealed keys and status.
type Endpoint struct {
	Spec spec.Endpoint `json:"spec"`
	// PrimaryKey and SecondaryKey are sealed (encrypted) by the caller; the
	// store never sees them in clear.
	PrimaryKey   string `json:"primary_key,omitempty"`
	SecondaryKey string `json:"secondary_key,omitempty"`
	State        string `json:"state"`
	Error        string `json:"error,omitempty"`
	// Version increases on every write; Update fails with ErrConflict when
	// the caller's Version is not the stored one (optimistic concurrency).
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Artifacts are the content digests of a deployment's snapshot in the
// artifact store ("sha256:<hex>"); empty means absent.
type Artifacts struct {
	Model string `json:"model,omitempty"`
	Code  string `json:"code,omitempty"`
	Conda string `json:"conda,omitempty"`
	// ModelIsFile is true when model.path was a single file (it then sits
	// directly in AZUREML_MODEL_DIR rather than in a folder of its own).
	ModelIsFile bool `json:"model_is_file,omitempty"`
	// ModelName is the basename of model.path, kept under AZUREML_MODEL_DIR.
	ModelName string `json:"model_name,omitempty"`
}

// Revision is one version of a deployment: its spec and snapshot.
type Revision struct {
	Generation int64           `json:"generation"`
	Spec       spec.Deployment `json:"spec"`
	Artifacts  Artifacts       `json:"artifacts"`
}

// Deployment is a stored deployment. Desired is what the user asked for
// last; Active is the last revision that became ready and keeps serving
// while a newer Desired is rolled out or has failed.
type Deployment struct {
	Endpoint string    `json:"endpoint"`
	Name     string    `json:"name"`
	Desired  Revision  `json:"desired"`
	Active   *Revision `json:"active,omitempty"`
	State    string    `json:"state"`
	Error    string    `json:"error,omitempty"`
	// FailedGeneration is the Desired generation that failed to become
	// ready; it is not retried until a new update arrives.
	FailedGeneration int64 `json:"failed_generation,omitempty"`
	// AllTraffic asks for 100 % of the endpoint's traffic once Desired is
	// ready (the CLI's --all-traffic); cleared when applied.
	AllTraffic bool      `json:"all_traffic,omitempty"`
	Version    int64     `json:"version"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Store is moe's persistent state. Implementations are safe for concurrent
// use. Every write is durable when it returns (it survives kill -9) and
// wakes Subscribe channels.
type Store interface {
	// CreateEndpoint stores a new endpoint; ErrConflict if the name exists.
	// It sets Version, CreatedAt and UpdatedAt on e.
	CreateEndpoint(ctx context.Context, e *Endpoint) error
	// GetEndpoint returns ErrNotFound if there is no such endpoint.
	GetEndpoint(ctx context.Context, name string) (*Endpoint, error)
	// ListEndpoints returns all endpoints ordered by name.
	ListEndpoints(ctx context.Context) ([]*Endpoint, error)
	// UpdateEndpoint replaces an endpoint if e.Version is current, else
	// ErrConflict; ErrNotFound if it is gone. It bumps e.Version.
	UpdateEndpoint(ctx context.Context, e *Endpoint) error
	// DeleteEndpoint removes an endpoint and all its deployments.
	DeleteEndpoint(ctx context.Context, name string) error

	// CreateDeployment stores a new deployment; ErrNotFound if its
	// endpoint does not exist, ErrConflict if the name exists.
	CreateDeployment(ctx context.Context, d *Deployment) error
	GetDeployment(ctx context.Context, endpoint, name string) (*Deployment, error)
	// ListDeployments lists an endpoint's deployments (all when endpoint is
	// ""), ordered by endpoint then name.
	ListDeployments(ctx context.Context, endpoint string) ([]*Deployment, error)
	UpdateDeployment(ctx context.Context, d *Deployment) error
	DeleteDeployment(ctx context.Context, endpoint, name string) error

	// GetSetting returns a named setting; ErrNotFound if there is none.
	GetSetting(ctx context.Context, name string) (*Setting, error)
	// PutSetting creates a setting (s.Version 0; ErrConflict if the name
	// exists) or replaces it (s.Version the stored one, else ErrConflict).
	// It bumps s.Version and wakes subscribers, here and on every replica.
	PutSetting(ctx context.Context, s *Setting) error

	// Subscribe returns a channel that receives a value (coalesced) after
	// every committed change, and a func to stop the subscription.
	Subscribe() (<-chan struct{}, func())
	Close() error
}

// Setting is a small named value the whole installation shares: every
// control-plane and gateway replica reads the same one (the aml_token
// signing key set, the admin credentials). Values that are secrets are
// sealed by the caller; the store never sees them in clear.
type Setting struct {
	Name      string    `json:"name"`
	Value     []byte    `json:"value"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Names of the settings moe keeps.
const (
	// SettingTokenKeys is the aml_token signing key set (sealed).
	SettingTokenKeys = "token-signing-keys"
	// SettingAdminToken and SettingReadonlyToken are the control plane's
	// two API credentials (sealed).
	SettingAdminToken    = "admin-token"
	SettingReadonlyToken = "readonly-token"
)

// Blobs stores immutable, content-addressed byte streams (the snapshots
// the CLI uploads) where every replica can read them. Only stores that
// several processes share implement it (postgres); with the single-machine
// store (sqlite), snapshots stay in the data dir.
type Blobs interface {
	// PutBlob stores the bytes r yields under digest ("sha256:<hex>" of
	// those bytes) and returns once they are durable. If they do not hash
	// to digest, nothing is stored and the error wraps ErrDigestMismatch.
	// A digest already stored is a no-op (r may be left unread); two
	// replicas storing the same digest at once both succeed.
	PutBlob(ctx context.Context, digest string, r io.Reader) error
	// OpenBlob streams a stored blob; ErrNotFound if absent. A read error
	// (not io.EOF) means the blob could not be read in full.
	OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error)
	// HasBlob reports whether a blob is stored.
	HasBlob(ctx context.Context, digest string) (bool, error)
	// DeleteBlob removes a blob; deleting an absent one is not an error.
	DeleteBlob(ctx context.Context, digest string) error
}

// Notifier fans change notifications out to subscribers; implementations
// embed it. The zero value is ready to use.
type Notifier struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// Subscribe implements Store.Subscribe.
func (n *Notifier) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	if n.subs == nil {
		n.subs = map[chan struct{}]struct{}{}
	}
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		delete(n.subs, ch)
		n.mu.Unlock()
	}
}

// Notify wakes every subscriber without blocking.
func (n *Notifier) Notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
