package upgrade

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Source says what a Service was read from.
const (
	// SourceService is a v1 service document (MMS GET .../services/{name}, or
	// `az ml service show -o json`).
	SourceService = "service"
	// SourceDeployConfig is a deploymentconfig.json (+ inferenceconfig.json).
	SourceDeployConfig = "deploymentconfig"
)

// Service is a legacy v1 web service (ACI or AKS) as the importer
// understands it: the union of both MMS schema generations (facts
// v1-services.md §1.2–1.6) and of the deploy-time files (§3). Every field
// is optional; a nil pointer means the document did not say. Fields the
// upgrade does not use are not kept.
type Service struct {
	// Source is SourceService or SourceDeployConfig.
	Source string `json:"-"`

	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	KVTags      map[string]string `json:"kvTags"`
	Properties  map[string]string `json:"properties"`
	State       string            `json:"state"`
	Error       *ModelError       `json:"error"`
	ComputeType string            `json:"computeType"`

	ContainerResourceRequirements *Resources `json:"containerResourceRequirements"`

	ImageID                 string                   `json:"imageId"`
	ImageDetails            json.RawMessage          `json:"imageDetails"`
	Models                  []Model                  `json:"models"`
	EnvironmentImageRequest *EnvironmentImageRequest `json:"environmentImageRequest"`
	// Environment is the 2019 schema's top-level environment.
	Environment *EnvironmentDefinition `json:"environment"`

	ScoringURI         string   `json:"scoringUri"`
	Location           string   `json:"location"`
	AuthEnabled        *optBool `json:"authEnabled"`
	AADAuthEnabled     *optBool `json:"aadAuthEnabled"`
	SSLEnabled         *optBool `json:"sslEnabled"`
	SSLCertificate     string   `json:"sslCertificate"`
	SSLKey             string   `json:"sslKey"`
	CName              string   `json:"cname"`
	PublicIP           string   `json:"publicIp"`
	PublicFQDN         string   `json:"publicFqdn"`
	AppInsightsEnabled *optBool `json:"appInsightsEnabled"`
	DataCollection     *struct {
		EventHubEnabled *optBool `json:"eventHubEnabled"`
		StorageEnabled  *optBool `json:"storageEnabled"`
	} `json:"dataCollection"`

	EncryptionProperties *EncryptionProperties `json:"encryptionProperties"`
	VnetConfiguration    *VnetConfiguration    `json:"vnetConfiguration"`

	// AKS.
	ComputeName                       string             `json:"computeName"`
	Namespace                         string             `json:"namespace"`
	NumReplicas                       *optInt            `json:"numReplicas"`
	AutoScaler                        *AutoScaler        `json:"autoScaler"`
	MaxConcurrentRequestsPerContainer *optInt            `json:"maxConcurrentRequestsPerContainer"`
	MaxQueueWaitMs                    *optInt            `json:"maxQueueWaitMs"`
	ScoringTimeoutMs                  *optInt            `json:"scoringTimeoutMs"`
	LivenessProbeRequirements         *ProbeRequirements `json:"livenessProbeRequirements"`
	ReadinessProbeRequirements        *ProbeRequirements `json:"readinessProbeRequirements"`
	EnvironmentVariables              map[string]string  `json:"environmentVariables"`

	// EntryScript and SourceDirectory come from inferenceconfig.json.
	EntryScript     string `json:"-"`
	SourceDirectory string `json:"-"`
	// CondaFile is inferenceconfig.json's (older) condaFile.
	CondaFile string `json:"-"`
	// Keys are the service's keys: from a keys file (listKeys), the
	// deploymentconfig.json keys block, or the workspace API. Nil: unknown.
	Keys *Keys `json:"-"`
}

// ModelError is MMS's ModelErrorResponse.
type ModelError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"details"`
}

// Resources is ContainerResourceRequirements.
type Resources struct {
	CPU           *optNum `json:"cpu"`
	CPULimit      *optNum `json:"cpuLimit"`
	MemoryInGB    *optNum `json:"memoryInGB"`
	MemoryInGBLim *optNum `json:"memoryInGBLimit"`
	GPU           *optInt `json:"gpu"`
	FPGA          *optInt `json:"fpga"`
}

// Model is a registered v1 model.
type Model struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Version optString `json:"version"`
}

// EnvironmentImageRequest is how an environment-based service was built.
type EnvironmentImageRequest struct {
	DriverProgram string `json:"driverProgram"`
	Assets        []struct {
		ID       string   `json:"id"`
		MimeType string   `json:"mimeType"`
		URL      string   `json:"url"`
		Unpack   *optBool `json:"unpack"`
	} `json:"assets"`
	ModelIDs             []string               `json:"modelIds"`
	Models               []Model                `json:"models"`
	Environment          *EnvironmentDefinition `json:"environment"`
	EnvironmentReference *struct {
		Name    string    `json:"name"`
		Version optString `json:"version"`
	} `json:"environmentReference"`
}

// EnvironmentDefinition is ModelEnvironmentDefinition (the Environment JSON).
type EnvironmentDefinition struct {
	Name    string    `json:"name"`
	Version optString `json:"version"`
	Python  *struct {
		UserManagedDependencies *optBool        `json:"userManagedDependencies"`
		CondaDependencies       json.RawMessage `json:"condaDependencies"`
		CondaDependenciesFile   string          `json:"condaDependenciesFile"`
	} `json:"python"`
	EnvironmentVariables map[string]string `json:"environmentVariables"`
	Docker               *struct {
		BaseImage      string          `json:"baseImage"`
		BaseDockerfile string          `json:"baseDockerfile"`
		BuildContext   json.RawMessage `json:"buildContext"`
		Registry       *struct {
			Address string `json:"address"`
		} `json:"baseImageRegistry"`
	} `json:"docker"`
}

// EncryptionProperties is the ACI customer-managed key.
type EncryptionProperties struct {
	VaultBaseURL string `json:"vaultBaseUrl"`
	KeyName      string `json:"keyName"`
	KeyVersion   string `json:"keyVersion"`
}

func (e *EncryptionProperties) set() bool {
	return e != nil && (e.VaultBaseURL != "" || e.KeyName != "" || e.KeyVersion != "")
}

// VnetConfiguration is ACI VNet injection.
type VnetConfiguration struct {
	VnetName   string `json:"vnetName"`
	SubnetName string `json:"subnetName"`
}

func (v *VnetConfiguration) set() bool { return v != nil && (v.VnetName != "" || v.SubnetName != "") }

// AutoScaler is the AKS autoscaler.
type AutoScaler struct {
	AutoscaleEnabled       *optBool `json:"autoscaleEnabled"`
	MinReplicas            *optInt  `json:"minReplicas"`
	MaxReplicas            *optInt  `json:"maxReplicas"`
	TargetUtilization      *optInt  `json:"targetUtilization"`
	RefreshPeriodInSeconds *optInt  `json:"refreshPeriodInSeconds"`
}

// ProbeRequirements is LivenessProbeRequirements.
type ProbeRequirements struct {
	FailureThreshold    *optInt `json:"failureThreshold"`
	SuccessThreshold    *optInt `json:"successThreshold"`
	TimeoutSeconds      *optInt `json:"timeoutSeconds"`
	PeriodSeconds       *optInt `json:"periodSeconds"`
	InitialDelaySeconds *optInt `json:"initialDelaySeconds"`
}

// Keys are a service's two keys, as listKeys returns them. They are secrets:
// nothing in this package prints or exports them, except to the Applier.
type Keys struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// ImportService decodes a v1 service document. Unknown keys are ignored and
// every field is optional; scalars are accepted leniently (a number or bool
// written as a string, null anywhere). It fails only on malformed JSON, a
// document that is not an object, or a value of the wrong shape (an object
// where a string belongs...), naming the field.
func ImportService(data []byte) (*Service, error) {
	var s Service
	if err := decodeObject(data, &s); err != nil {
		return nil, fmt.Errorf("import v1 service: %w", err)
	}
	s.Source = SourceService
	if s.Name == "" {
		s.Name = s.ID
	}
	return &s, nil
}

// ImportKeys decodes a listKeys answer ({"primaryKey", "secondaryKey"}).
// Both keys must be present.
func ImportKeys(data []byte) (*Keys, error) {
	var k Keys
	if err := decodeObject(data, &k); err != nil {
		return nil, fmt.Errorf("import v1 keys: %w", err)
	}
	if k.PrimaryKey == "" || k.SecondaryKey == "" {
		return nil, errors.New("import v1 keys: primaryKey and secondaryKey are both required")
	}
	return &k, nil
}

// deployConfig is deploymentconfig.json, ACI and AKS forms (facts §3.1–3.2).
type deployConfig struct {
	ComputeType                       string                `json:"computeType"`
	ComputeTargetName                 string                `json:"computeTargetName"`
	ContainerResourceRequirements     *Resources            `json:"containerResourceRequirements"`
	Location                          string                `json:"location"`
	AuthEnabled                       *optBool              `json:"authEnabled"`
	TokenAuthEnabled                  *optBool              `json:"tokenAuthEnabled"`
	SSLEnabled                        *optBool              `json:"sslEnabled"`
	SSLCertificate                    string                `json:"sslCertificate"`
	SSLKey                            string                `json:"sslKey"`
	CName                             string                `json:"cname"`
	DNSNameLabel                      string                `json:"dnsNameLabel"`
	AppInsightsEnabled                *optBool              `json:"appInsightsEnabled"`
	VaultBaseURL                      string                `json:"vaultBaseUrl"`
	KeyName                           string                `json:"keyName"`
	KeyVersion                        string                `json:"keyVersion"`
	VnetName                          string                `json:"vnetName"`
	SubnetName                        string                `json:"subnetName"`
	EncryptionProperties              *EncryptionProperties `json:"encryptionProperties"`
	VnetConfiguration                 *VnetConfiguration    `json:"vnetConfiguration"`
	Keys                              *Keys                 `json:"keys"`
	AutoScaler                        *AutoScaler           `json:"autoScaler"`
	NumReplicas                       *optInt               `json:"numReplicas"`
	ScoringTimeoutMs                  *optInt               `json:"scoringTimeoutMs"`
	MaxConcurrentRequestsPerContainer *optInt               `json:"maxConcurrentRequestsPerContainer"`
	MaxQueueWaitMs                    *optInt               `json:"maxQueueWaitMs"`
	GPUCores                          *optInt               `json:"gpuCores"`
	LivenessProbeRequirements         *ProbeRequirements    `json:"livenessProbeRequirements"`
	Namespace                         string                `json:"namespace"`
	Description                       string                `json:"description"`
	DataCollection                    *struct {
		StorageEnabled *optBool `json:"storageEnabled"`
	} `json:"dataCollection"`
}

// inferenceConfig is inferenceconfig.json, current and older forms (§3.3).
type inferenceConfig struct {
	EntryScript     string                 `json:"entryScript"`
	SourceDirectory string                 `json:"sourceDirectory"`
	Environment     *EnvironmentDefinition `json:"environment"`
	CondaFile       string                 `json:"condaFile"`
	BaseImage       string                 `json:"baseImage"`
	EnableGPU       *optBool               `json:"enableGpu"`
}

// ImportDeployConfig builds a Service from the v1 deploy-time files:
// deploymentconfig.json (required) and inferenceconfig.json (optional, nil
// or empty to skip). name is the service name (`az ml model deploy -n`), which
// the files do not hold. Defaults the v1 SDK applies at deploy time are
// applied here (ACI: key auth off; AKS: key auth on), so Plan sees what the
// service would have been.
func ImportDeployConfig(name string, deploymentConfig, inferenceConfigJSON []byte) (*Service, error) {
	var dc deployConfig
	if err := decodeObject(deploymentConfig, &dc); err != nil {
		return nil, fmt.Errorf("import deploymentconfig.json: %w", err)
	}
	s := &Service{
		Source:                            SourceDeployConfig,
		Name:                              name,
		Description:                       dc.Description,
		ComputeType:                       strings.ToUpper(dc.ComputeType),
		ContainerResourceRequirements:     dc.ContainerResourceRequirements,
		Location:                          dc.Location,
		AuthEnabled:                       dc.AuthEnabled,
		AADAuthEnabled:                    dc.TokenAuthEnabled,
		SSLEnabled:                        dc.SSLEnabled,
		SSLCertificate:                    dc.SSLCertificate,
		SSLKey:                            dc.SSLKey,
		CName:                             dc.CName,
		AppInsightsEnabled:                dc.AppInsightsEnabled,
		EncryptionProperties:              dc.EncryptionProperties,
		VnetConfiguration:                 dc.VnetConfiguration,
		ComputeName:                       dc.ComputeTargetName,
		Namespace:                         dc.Namespace,
		NumReplicas:                       dc.NumReplicas,
		AutoScaler:                        dc.AutoScaler,
		MaxConcurrentRequestsPerContainer: dc.MaxConcurrentRequestsPerContainer,
		MaxQueueWaitMs:                    dc.MaxQueueWaitMs,
		ScoringTimeoutMs:                  dc.ScoringTimeoutMs,
		LivenessProbeRequirements:         dc.LivenessProbeRequirements,
	}
	if dc.VaultBaseURL != "" || dc.KeyName != "" || dc.KeyVersion != "" {
		s.EncryptionProperties = &EncryptionProperties{VaultBaseURL: dc.VaultBaseURL, KeyName: dc.KeyName, KeyVersion: dc.KeyVersion}
	}
	if dc.VnetName != "" || dc.SubnetName != "" {
		s.VnetConfiguration = &VnetConfiguration{VnetName: dc.VnetName, SubnetName: dc.SubnetName}
	}
	if dc.Keys != nil && dc.Keys.PrimaryKey != "" {
		k := *dc.Keys
		s.Keys = &k
	}
	if dc.GPUCores != nil {
		if s.ContainerResourceRequirements == nil {
			s.ContainerResourceRequirements = &Resources{}
		}
		if s.ContainerResourceRequirements.GPU == nil {
			s.ContainerResourceRequirements.GPU = dc.GPUCores
		}
	}
	if dc.DataCollection != nil {
		s.DataCollection = &struct {
			EventHubEnabled *optBool `json:"eventHubEnabled"`
			StorageEnabled  *optBool `json:"storageEnabled"`
		}{StorageEnabled: dc.DataCollection.StorageEnabled}
	}
	// Deploy-time defaults (facts §3.1, §3.2).
	switch s.ComputeType {
	case "ACI":
		if s.AuthEnabled == nil {
			s.AuthEnabled = newOptBool(false)
		}
	case "AKS":
		if s.AuthEnabled == nil {
			s.AuthEnabled = newOptBool(!s.AADAuthEnabled.value())
		}
	}
	if len(bytes.TrimSpace(inferenceConfigJSON)) > 0 {
		var ic inferenceConfig
		if err := decodeObject(inferenceConfigJSON, &ic); err != nil {
			return nil, fmt.Errorf("import inferenceconfig.json: %w", err)
		}
		s.EntryScript = ic.EntryScript
		s.SourceDirectory = ic.SourceDirectory
		s.CondaFile = ic.CondaFile
		s.Environment = ic.Environment
		if s.Environment == nil && ic.BaseImage != "" {
			s.Environment = &EnvironmentDefinition{}
			s.Environment.Docker = &struct {
				BaseImage      string          `json:"baseImage"`
				BaseDockerfile string          `json:"baseDockerfile"`
				BuildContext   json.RawMessage `json:"buildContext"`
				Registry       *struct {
					Address string `json:"address"`
				} `json:"baseImageRegistry"`
			}{BaseImage: ic.BaseImage}
		}
	}
	return s, nil
}

// LooksLikeDeployConfig reports whether a JSON document is more likely a
// deploymentconfig.json than a service document: it has none of the keys
// MMS always returns (name, id, state, scoringUri, createdTime).
func LooksLikeDeployConfig(data []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return false
	}
	for _, k := range []string{"name", "id", "state", "scoringUri", "createdTime"} {
		if _, ok := m[k]; ok {
			return false
		}
	}
	_, ok := m["computeType"]
	return ok
}

// decodeObject decodes a JSON object leniently: unknown keys are ignored.
func decodeObject(data []byte, v any) error {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // BOM, as Windows editors write it
	trim := bytes.TrimSpace(data)
	if len(trim) == 0 || trim[0] != '{' {
		return errors.New("the document must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trim))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("%s: cannot use a JSON %s here", te.Field, te.Value)
		}
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// optBool is a bool that also accepts "true"/"false" strings and null.
type optBool bool

func newOptBool(b bool) *optBool { v := optBool(b); return &v }

func (b *optBool) value() bool { return b != nil && bool(*b) }

func (b *optBool) UnmarshalJSON(data []byte) error {
	switch strings.ToLower(strings.Trim(string(data), `"`)) {
	case "true":
		*b = true
	case "false", "null", "":
		*b = false
	default:
		return &json.UnmarshalTypeError{Value: "value " + truncate(string(data)), Type: reflect.TypeFor[bool]()}
	}
	return nil
}

// optNum is a number kept as its decimal text (so 1.2 stays exactly 1.2);
// it also accepts a numeric string.
type optNum string

func (n *optNum) UnmarshalJSON(data []byte) error {
	s := strings.TrimSpace(string(data))
	if s == "null" {
		return nil
	}
	s = strings.Trim(s, `"`)
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		return &json.UnmarshalTypeError{Value: "value " + truncate(string(data)), Type: reflect.TypeFor[float64]()}
	}
	*n = optNum(s)
	return nil
}

func (n *optNum) float() float64 {
	if n == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(string(*n), 64)
	return f
}

// optInt is an int32-range integer that also accepts a numeric string or an
// integral float (2.0).
type optInt int

func (n *optInt) UnmarshalJSON(data []byte) error {
	s := strings.Trim(strings.TrimSpace(string(data)), `"`)
	if s == "null" {
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != float64(int64(f)) || f > 1<<31-1 || f < -(1<<31) {
		return &json.UnmarshalTypeError{Value: "value " + truncate(string(data)), Type: reflect.TypeFor[int32]()}
	}
	*n = optInt(f)
	return nil
}

func (n *optInt) value() int {
	if n == nil {
		return 0
	}
	return int(*n)
}

// optString accepts a string or a number (model versions are either).
type optString string

func (s *optString) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var v string
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		*s = optString(v)
		return nil
	}
	if string(data) == "null" {
		return nil
	}
	if _, err := strconv.ParseFloat(string(data), 64); err != nil {
		return &json.UnmarshalTypeError{Value: "value " + truncate(string(data)), Type: reflect.TypeFor[string]()}
	}
	*s = optString(data)
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
