package reconcile

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

// PropMaxRequestsPerSecond is spec.PropMaxRequestsPerSecond: a positive
// integer caps the endpoint's requests per second; absent means no limit.
// Azure limits managed endpoints to 500/s by default; set it to 500 to
// behave the same.
const PropMaxRequestsPerSecond = spec.PropMaxRequestsPerSecond

// KeyOpener returns an endpoint's keys in clear (they are sealed at rest).
type KeyOpener func(e *store.Endpoint) (primary, secondary auth.Secret, err error)

// BuildRoutes builds the gateway's route table: for each endpoint its auth
// data and traffic, and for each deployment the ready instances of its
// Active revision. Instances already in prev keep their identity (and so
// their load counters). Endpoints whose keys cannot be opened are left out
// (and so answer 404) rather than served without auth; errs collects why.
// An invalid moe.max_requests_per_second is reported in errs too, and the
// endpoint is served without a rate limit.
func BuildRoutes(eps []*store.Endpoint, deps []*store.Deployment, observed []Instance, open KeyOpener, prev *gateway.Table) (t *gateway.Table, errs []error) {
	old := map[string]*gateway.Instance{}
	if prev != nil {
		for _, e := range prev.Endpoints {
			for _, d := range e.Deployments {
				for _, in := range d.Instances {
					old[in.ID+"@"+in.Addr] = in
				}
			}
		}
	}
	ready := map[string][]Instance{}
	for _, in := range observed {
		if in.Phase == PhaseReady && in.Addr != "" {
			k := key(in.Endpoint, in.Deployment)
			ready[k] = append(ready[k], in)
		}
	}
	byEndpoint := map[string][]*store.Deployment{}
	for _, d := range deps {
		byEndpoint[strings.ToLower(d.Endpoint)] = append(byEndpoint[strings.ToLower(d.Endpoint)], d)
	}
	t = &gateway.Table{Endpoints: make(map[string]*gateway.Endpoint, len(eps))}
	for _, e := range eps {
		name := strings.ToLower(e.Spec.Name)
		ge := &gateway.Endpoint{
			Name:            e.Spec.Name,
			AuthMode:        e.Spec.AuthMode,
			PassModelStatus: e.Spec.PassModelStatus(),
			Deployments:     map[string]*gateway.Deployment{},
		}
		if v, ok := e.Spec.Properties[PropMaxRequestsPerSecond]; ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n <= 0 {
				errs = append(errs, fmt.Errorf("endpoint %q: property %s: %q is not a positive integer; serving without a rate limit",
					e.Spec.Name, PropMaxRequestsPerSecond, v))
			} else {
				ge.MaxRequestsPerSecond = n
			}
		}
		if e.Spec.AuthMode == "key" {
			p, s, err := open(e)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ge.PrimaryKey, ge.SecondaryKey = p, s
		}
		for _, d := range byEndpoint[name] {
			if d.Active == nil {
				continue
			}
			rs := d.Active.Spec.RequestSettings
			gd := &gateway.Deployment{Name: d.Name, RequestTimeout: 5 * time.Second, MaxConcurrentPerInstance: 1}
			if rs != nil {
				gd.RequestTimeout = time.Duration(rs.RequestTimeoutMS) * time.Millisecond
				gd.MaxConcurrentPerInstance = rs.MaxConcurrentRequestsPerInstance
			}
			for _, in := range ready[key(d.Endpoint, d.Name)] {
				if in.Generation != d.Active.Generation {
					continue
				}
				gi := old[in.ID+"@"+in.Addr]
				if gi == nil {
					gi = &gateway.Instance{ID: in.ID, Addr: in.Addr}
				}
				gd.Instances = append(gd.Instances, gi)
			}
			sort.Slice(gd.Instances, func(i, j int) bool { return gd.Instances[i].ID < gd.Instances[j].ID })
			ge.Deployments[strings.ToLower(d.Name)] = gd
		}
		for _, dn := range sortedKeys(e.Spec.Traffic) {
			if pct := e.Spec.Traffic[dn]; pct > 0 {
				ge.Traffic = append(ge.Traffic, gateway.Weight{Deployment: strings.ToLower(dn), Percent: pct})
			}
		}
		for dn, pct := range e.Spec.MirrorTraffic {
			if pct > 0 {
				ge.Mirror = &gateway.Weight{Deployment: strings.ToLower(dn), Percent: pct}
			}
		}
		t.Endpoints[name] = ge
	}
	return t, errs
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
