package host

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// pythonFiles holds the worker and the azureml compatibility shims. "all:"
// is needed because package files are named __init__.py.
//
//go:embed all:python
var pythonFiles embed.FS

// writePythonFiles copies the embedded python/ tree into a new private
// directory and returns it; the caller removes it when done.
func writePythonFiles() (string, error) {
	dir, err := os.MkdirTemp("", "moe-host-")
	if err != nil {
		return "", fmt.Errorf("write worker files: %w", err)
	}
	err = fs.WalkDir(pythonFiles, "python", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("python", p)
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if d.IsDir() {
			if d.Name() == "__pycache__" {
				return fs.SkipDir
			}
			return os.MkdirAll(dst, 0o700)
		}
		b, err := pythonFiles.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("write worker files: %w", err)
	}
	return dir, nil
}
