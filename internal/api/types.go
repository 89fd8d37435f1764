// Package api is moe's control-plane HTTP API (server.go) and its typed
// client (client.go), which the CLI uses. Bodies are JSON with the same
// snake_case names `az ml` prints; key and token bodies use Azure's REST
// names (primaryKey, accessToken...).
package api

import (
	"time"

	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

// Keys are an endpoint's keys as listKeys returns them.
type Keys struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// AccessToken is an aml_token as the token API returns it.
type AccessToken struct {
	AccessToken         string `json:"accessToken"`
	TokenType           string `json:"tokenType"`
	ExpiryTimeUTC       int64  `json:"expiryTimeUtc"`
	RefreshAfterTimeUTC int64  `json:"refreshAfterTimeUtc"`
}

// CreateEndpointRequest creates an endpoint; Keys seeds its keys (the
// upgrade tool keeps v1 keys this way), else new ones are generated.
type CreateEndpointRequest struct {
	Endpoint spec.Endpoint `json:"endpoint"`
	Keys     *Keys         `json:"keys,omitempty"`
}

// RegenerateKeysRequest replaces one key (Azure's regenerateKeys body).
type RegenerateKeysRequest struct {
	KeyType  string `json:"keyType"`
	KeyValue string `json:"keyValue,omitempty"`
}

// DeploymentRequest creates or updates a deployment. Artifacts are the
// digests of snapshots uploaded with PutArtifact; on update, nil keeps the
// current snapshot (e.g. `update --set instance_count=2`).
type DeploymentRequest struct {
	Deployment spec.Deployment  `json:"deployment"`
	Artifacts  *store.Artifacts `json:"artifacts,omitempty"`
	// AllTraffic routes 100 % of the endpoint's traffic to this deployment
	// once it is ready.
	AllTraffic bool `json:"all_traffic,omitempty"`
}

// LogsRequest asks for a deployment's logs (Azure's getLogs body).
type LogsRequest struct {
	ContainerType string `json:"containerType,omitempty"`
	Tail          int    `json:"tail,omitempty"`
}

// Logs is the getLogs answer.
type Logs struct {
	Content string `json:"content"`
}

// ArtifactRef is PutArtifact's answer.
type ArtifactRef struct {
	Digest string `json:"digest"`
}

// EndpointView is an endpoint as show/list print it.
type EndpointView struct {
	Name                string            `json:"name"`
	Description         string            `json:"description,omitempty"`
	AuthMode            string            `json:"auth_mode"`
	Identity            *spec.Identity    `json:"identity,omitempty"`
	Kind                string            `json:"kind"`
	Location            string            `json:"location"`
	Properties          map[string]string `json:"properties"`
	ProvisioningState   string            `json:"provisioning_state"`
	PublicNetworkAccess string            `json:"public_network_access"`
	ScoringURI          string            `json:"scoring_uri"`
	OpenAPIURI          string            `json:"openapi_uri"`
	Tags                map[string]string `json:"tags"`
	Traffic             map[string]int    `json:"traffic"`
	MirrorTraffic       map[string]int    `json:"mirror_traffic"`
	CreatedAt           time.Time         `json:"created_at"`
	UpdatedAt           time.Time         `json:"updated_at"`
}

// Spec returns the user-settable part of the view.
func (v *EndpointView) Spec() spec.Endpoint {
	t := map[string]int{}
	for k, p := range v.Traffic {
		if p > 0 {
			t[k] = p
		}
	}
	return spec.Endpoint{Name: v.Name, Description: v.Description, AuthMode: v.AuthMode, Identity: v.Identity,
		Properties: v.Properties, PublicNetworkAccess: v.PublicNetworkAccess, Tags: v.Tags, Traffic: t, MirrorTraffic: v.MirrorTraffic}
}

// DeploymentView is a deployment as show/list print it: the spec the user
// asked for last, plus status.
type DeploymentView struct {
	spec.Deployment
	ProvisioningState string `json:"provisioning_state"`
	// Error is the last provisioning error, with its cause.
	Error string `json:"error,omitempty"`
	// Generation is the desired revision; ActiveGeneration the one serving.
	Generation       int64          `json:"generation"`
	ActiveGeneration int64          `json:"active_generation,omitempty"`
	Instances        []InstanceView `json:"instances"`
	// ReadyInstances and TotalInstances summarise Instances.
	ReadyInstances int       `json:"ready_instances"`
	TotalInstances int       `json:"total_instances"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// InstanceView is one instance in a deployment view.
type InstanceView struct {
	ID         string          `json:"id"`
	Generation int64           `json:"generation"`
	State      reconcile.Phase `json:"state"`
	Reason     string          `json:"reason,omitempty"`
	Restarts   int             `json:"restarts"`
	StartedAt  time.Time       `json:"started_at"`
	Resources  string          `json:"resources,omitempty"`
	Adopted    bool            `json:"adopted,omitempty"`
}

// Error is the JSON body of every error answer.
type Error struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Details []spec.FieldError `json:"details,omitempty"`
}
