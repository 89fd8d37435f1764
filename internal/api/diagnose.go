package api

import (
	"io/fs"
	"net/http"
	"path/filepath"

	"github.com/moe-serving/moe/internal/diagnose"
)

// Counters are a deployment's request counts as the gateway saw them.
type Counters struct {
	Requests, Timeouts408, Rejected429, ModelErrors int64
	ModelP99MS                                      float64
}

// diagnose explains a deployment's failure or slowness from its state, logs,
// snapshot and request counts.
func (s *Server) diagnose(w http.ResponseWriter, r *http.Request) error {
	ep, name := r.PathValue("endpoint"), r.PathValue("deployment")
	d, err := s.Store.GetDeployment(r.Context(), ep, name)
	if err != nil {
		return err
	}
	v := s.deploymentView(d)
	sp := d.Desired.Spec
	in := diagnose.Input{Endpoint: d.Endpoint, Deployment: d.Name, State: d.State, Error: d.Error, Instances: v.TotalInstances}
	for _, i := range v.Instances {
		if i.Reason != "" {
			in.InstanceReasons = append(in.InstanceReasons, i.Reason)
		}
	}
	if sp.CodeConfiguration != nil {
		in.ScoringScript = sp.CodeConfiguration.ScoringScript
	}
	if rs := sp.RequestSettings; rs != nil {
		in.RequestTimeoutMS, in.MaxConcurrent = rs.RequestTimeoutMS, rs.MaxConcurrentRequestsPerInstance
	}
	if rp := sp.ReadinessProbe; rp != nil {
		in.ReadinessBudgetS = rp.InitialDelay + rp.Period*rp.FailureThreshold
	}
	if s.Logs != nil {
		in.InferenceLog, _ = s.Logs(d.Endpoint, d.Name, "inference-server", 300)
		in.ProvisioningLog, _ = s.Logs(d.Endpoint, d.Name, "storage-initializer", 100)
	}
	if dir, err := s.Artifacts.Local(r.Context(), d.Desired.Artifacts.Model); err == nil {
		in.ModelDir = dir
		filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() && len(in.ModelFiles) < 200 {
				rel, _ := filepath.Rel(dir, p)
				in.ModelFiles = append(in.ModelFiles, filepath.ToSlash(rel))
			}
			return nil
		})
	}
	if s.Counters != nil {
		c := s.Counters(d.Endpoint, d.Name)
		in.Requests, in.Timeouts408, in.Rejected429, in.ModelErrors, in.ModelP99MS = c.Requests, c.Timeouts408, c.Rejected429, c.ModelErrors, c.ModelP99MS
	}
	return writeJSON(w, http.StatusOK, diagnose.Diagnose(in))
}
