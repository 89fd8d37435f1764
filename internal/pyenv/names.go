package pyenv

import "strings"

// ignoreReason says why a requirement is not checked, or "" if it is.
func ignoreReason(key string) string {
	switch {
	case key == "python":
		return "moe runs the deployment with its own interpreter; the Python version is not enforced"
	case key == "pip", key == "setuptools", key == "wheel", key == "conda", key == "python-abi":
		return "packaging tool, not needed at run time"
	case key == "inference-schema", strings.HasPrefix(key, "azureml-"):
		return "provided by moe's scoring server"
	case systemLibs[key]:
		return "conda system library, not a Python package (use the machine's libraries)"
	}
	return ""
}

// systemLibs are conda packages that are native libraries rather than Python
// distributions; they appear in exported conda environments.
var systemLibs = map[string]bool{
	"cudatoolkit": true, "cudnn": true, "nccl": true, "cuda-toolkit": true, "cuda-version": true,
	"mkl": true, "mkl-include": true, "intel-openmp": true, "blas": true, "libblas": true,
	"libcblas": true, "liblapack": true, "openblas": true, "libopenblas": true, "nomkl": true,
	"libgcc-ng": true, "libgomp": true, "libstdcxx-ng": true, "-libgcc-mutex": true, "-openmp-mutex": true,
	"ld-impl-linux-64": true, "libffi": true, "ncurses": true, "readline": true, "sqlite": true,
	"tk": true, "xz": true, "zlib": true, "bzip2": true, "openssl": true, "ca-certificates": true,
	"tzdata": true, "libuuid": true, "libnsl": true, "libzlib": true, "libsqlite": true,
}

// alias maps well-known conda and pip names to what is looked up in the
// interpreter: the distribution names (normalised) that satisfy it, the
// top-level modules that satisfy it when no distribution metadata exists
// (Debian's python3-opencv, for example, ships none), and the Debian
// package that provides it.
type alias struct {
	dists   []string
	modules []string
	debian  string
}

var aliases = map[string]alias{
	"scikit-learn":                   {[]string{"scikit-learn"}, []string{"sklearn"}, "python3-sklearn"},
	"sklearn":                        {[]string{"scikit-learn"}, []string{"sklearn"}, "python3-sklearn"},
	"pillow":                         {[]string{"pillow"}, []string{"PIL"}, "python3-pil"},
	"pil":                            {[]string{"pillow"}, []string{"PIL"}, "python3-pil"},
	"opencv":                         opencv,
	"py-opencv":                      opencv,
	"opencv-python":                  opencv,
	"opencv-python-headless":         opencv,
	"opencv-contrib-python":          opencv,
	"opencv-contrib-python-headless": opencv,
	"pytorch":                        {[]string{"torch"}, []string{"torch"}, "python3-torch"},
	"torch":                          {[]string{"torch"}, []string{"torch"}, "python3-torch"},
	"pytorch-cpu":                    {[]string{"torch"}, []string{"torch"}, "python3-torch"},
	"pyyaml":                         {[]string{"pyyaml"}, []string{"yaml"}, "python3-yaml"},
	"yaml":                           {[]string{"pyyaml"}, []string{"yaml"}, "python3-yaml"},
	"beautifulsoup4":                 {[]string{"beautifulsoup4"}, []string{"bs4"}, "python3-bs4"},
	"bs4":                            {[]string{"beautifulsoup4"}, []string{"bs4"}, "python3-bs4"},
	"python-dateutil":                {[]string{"python-dateutil"}, []string{"dateutil"}, "python3-dateutil"},
	"dateutil":                       {[]string{"python-dateutil"}, []string{"dateutil"}, "python3-dateutil"},
	"py-xgboost":                     {[]string{"xgboost"}, []string{"xgboost"}, "python3-xgboost"},
	"xgboost":                        {[]string{"xgboost"}, []string{"xgboost"}, "python3-xgboost"},
	"tensorflow":                     tensorflow,
	"tensorflow-cpu":                 tensorflow,
	"tensorflow-gpu":                 tensorflow,
	"msgpack-python":                 {[]string{"msgpack"}, []string{"msgpack"}, "python3-msgpack"},
	"matplotlib-base":                {[]string{"matplotlib"}, []string{"matplotlib"}, "python3-matplotlib"},
	"numpy-base":                     {[]string{"numpy"}, []string{"numpy"}, "python3-numpy"},
	"pyopenssl":                      {[]string{"pyopenssl"}, []string{"OpenSSL"}, "python3-openssl"},
	"scikit-image":                   {[]string{"scikit-image"}, []string{"skimage"}, "python3-skimage"},
	"pyjwt":                          {[]string{"pyjwt"}, []string{"jwt"}, "python3-jwt"},
	"pytables":                       {[]string{"tables"}, []string{"tables"}, "python3-tables"},
	"tables":                         {[]string{"tables"}, []string{"tables"}, "python3-tables"},
	"psycopg2-binary":                {[]string{"psycopg2", "psycopg2-binary"}, []string{"psycopg2"}, "python3-psycopg2"},
	"psycopg2":                       {[]string{"psycopg2", "psycopg2-binary"}, []string{"psycopg2"}, "python3-psycopg2"},
	"protobuf":                       {[]string{"protobuf"}, []string{"google.protobuf"}, "python3-protobuf"},
	"attrs":                          {[]string{"attrs"}, []string{"attr", "attrs"}, "python3-attr"},
	"typing-extensions":              {[]string{"typing-extensions"}, []string{"typing_extensions"}, "python3-typing-extensions"},
	"scipy":                          {[]string{"scipy"}, []string{"scipy"}, "python3-scipy"},
	"lightgbm":                       {[]string{"lightgbm"}, []string{"lightgbm"}, "python3-lightgbm"},
	"gunicorn":                       {[]string{"gunicorn"}, []string{"gunicorn"}, "python3-gunicorn"},
}

var (
	opencv = alias{
		[]string{"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"},
		[]string{"cv2"}, "python3-opencv",
	}
	tensorflow = alias{
		[]string{"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tf-nightly"},
		[]string{"tensorflow"}, "python3-tensorflow",
	}
)

// lookup returns what satisfies a requirement with normalised name key.
func lookup(key string) alias {
	if a, ok := aliases[key]; ok {
		return a
	}
	mod := strings.ReplaceAll(strings.ReplaceAll(key, "-", "_"), ".", "_")
	return alias{dists: []string{key}, modules: []string{mod}, debian: "python3-" + key}
}

// canonical is the key used to de-duplicate requirements that name the same
// distribution ("sklearn" and "scikit-learn").
func canonical(key string) string {
	if a, ok := aliases[key]; ok {
		return a.dists[0]
	}
	return key
}
