package upgrade

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// File names of the v1 deploy-time files.
const (
	DeployConfigName    = "deploymentconfig.json"
	InferenceConfigName = "inferenceconfig.json"
)

// LoadService reads one service from p, which is one of:
//   - a v1 service document (JSON);
//   - a deploymentconfig.json (recognised by name or by its keys), with the
//     inferenceconfig.json beside it when present;
//   - a directory holding deploymentconfig.json (and inferenceconfig.json).
//
// name names a service described by deploy-time files (which do not hold
// it); "" means the folder's name. Keys are read from keysPath when given,
// else from "<file without .json>.keys.json" beside a service document when
// that exists.
func LoadService(p, name, keysPath string) (*Service, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	var svc *Service
	if st.IsDir() {
		dc := filepath.Join(p, DeployConfigName)
		if !exists(dc) {
			return nil, fmt.Errorf("%s holds no %s (to plan many services, use a folder of service documents)", p, DeployConfigName)
		}
		svc, err = loadDeployConfig(dc, firstNonEmpty(name, filepath.Base(absOr(p))))
	} else {
		var data []byte
		data, err = os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(filepath.Base(p), DeployConfigName) || LooksLikeDeployConfig(data) {
			svc, err = loadDeployConfig(p, firstNonEmpty(name, filepath.Base(filepath.Dir(absOr(p)))))
		} else {
			svc, err = ImportService(data)
			if err == nil && keysPath == "" {
				if k := strings.TrimSuffix(p, filepath.Ext(p)) + ".keys.json"; exists(k) {
					keysPath = k
				}
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if keysPath != "" {
		b, err := os.ReadFile(keysPath)
		if err != nil {
			return nil, err
		}
		k, err := ImportKeys(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keysPath, err)
		}
		svc.Keys = k
	}
	return svc, nil
}

func loadDeployConfig(dcPath, name string) (*Service, error) {
	dc, err := os.ReadFile(dcPath)
	if err != nil {
		return nil, err
	}
	var ic []byte
	if icPath := filepath.Join(filepath.Dir(dcPath), InferenceConfigName); exists(icPath) {
		if ic, err = os.ReadFile(icPath); err != nil {
			return nil, err
		}
	}
	return ImportDeployConfig(name, dc, ic)
}

// BatchInputs lists the services of a folder for batch planning: every
// *.json file except *.keys.json and inferenceconfig.json, and every
// subfolder holding a deploymentconfig.json. A folder that itself holds a
// deploymentconfig.json is one service, not a batch. Paths are sorted.
func BatchInputs(dir string) ([]string, error) {
	if exists(filepath.Join(dir, DeployConfigName)) {
		return []string{dir}, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		low := strings.ToLower(e.Name())
		switch {
		case e.IsDir():
			if exists(filepath.Join(p, DeployConfigName)) {
				out = append(out, p)
			}
		case strings.HasSuffix(low, ".keys.json"), low == InferenceConfigName:
		case strings.HasSuffix(low, ".json"):
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
