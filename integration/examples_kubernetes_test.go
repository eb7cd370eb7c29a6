package integration

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// TestExampleKubernetes checks that the Kubernetes manifests hold what the
// README promises: a Deployment with the proxy as a hardened sidecar
// probed on its health listener, certificates from a read-only Secret,
// the daemon on loopback, a Service for the metrics port, and a
// ServiceMonitor scraping it over https with a client certificate. The
// objects are checked against each other and against the proxy config in
// the ConfigMap, so that a port or path changed in one place alone fails.
func TestExampleKubernetes(t *testing.T) {
	m := loadK8sManifests(t)
	t.Run("kinds", func(t *testing.T) {
		counts := map[string]int{
			"Deployment":     len(m.deployments),
			"Service":        len(m.services),
			"ServiceMonitor": len(m.serviceMonitors),
			"ConfigMap":      len(m.configMaps),
		}
		for _, kind := range slices.Sorted(maps.Keys(counts)) {
			if counts[kind] == 0 {
				t.Errorf("no %s in the Kubernetes examples", kind)
			}
		}
	})
	t.Run("kustomization", func(t *testing.T) {
		checkKustomizations(t, m)
	})
	for _, d := range m.deployments {
		t.Run("Deployment "+d.Metadata.Name, func(t *testing.T) {
			checkDeploymentChain(t, m, d)
		})
	}
}

// checkKustomizations fails when a kustomization.yaml does not list
// exactly the other manifests of its folder.
func checkKustomizations(t *testing.T, m k8sManifests) {
	if len(m.resources) == 0 {
		t.Skip("no kustomization.yaml")
	}
	for dir, resources := range m.resources {
		var want []string
		for _, f := range m.files[dir] {
			if f != "kustomization.yaml" {
				want = append(want, f)
			}
		}
		slices.Sort(want)
		got := slices.Sorted(slices.Values(resources))
		if !slices.Equal(got, want) {
			t.Errorf("%s/kustomization.yaml lists %v, the folder holds %v", dir, got, want)
		}
	}
}

// checkDeploymentChain checks a Deployment, the proxy config it mounts,
// and the Services and ServiceMonitors that select it.
func checkDeploymentChain(t *testing.T, m k8sManifests, d k8sDeployment) {
	pod := d.Spec.Template.Spec
	if !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
		t.Errorf("selector %v does not match the pod labels %v",
			d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
	}
	for _, c := range pod.Containers {
		checkHardened(t, pod, c)
	}
	proxy, ok := findContainer(pod, proxyContainerName)
	if !ok {
		t.Fatalf("no container named %q", proxyContainerName)
	}
	cfg := mountedProxyConfig(t, m, pod, proxy)
	checkProbes(t, proxy, cfg)
	checkSecretMount(t, pod, proxy, cfg)
	checkDaemonsOnLoopback(t, pod, cfg)

	metricsPort := cfg.metricsPort(t)
	if _, ok := portName(proxy, metricsPort); !ok {
		t.Errorf("the proxy container declares no named port %d, the metrics listener's",
			metricsPort)
	}
	svcs := servicesSelecting(m, d.Spec.Template.Metadata.Labels)
	if len(svcs) == 0 {
		t.Fatal("no Service selects the pods")
	}
	for _, svc := range svcs {
		checkService(t, svc, proxy, cfg)
		checkServiceMonitors(t, m, svc, cfg)
	}
}

// checkHardened checks a container's effective security context (its own
// fields, else the pod's) and its resources.
func checkHardened(t *testing.T, pod k8sPodSpec, c k8sContainer) {
	sc, psc := c.SecurityContext, pod.SecurityContext
	nonRoot := firstSet(sc.RunAsNonRoot, psc.RunAsNonRoot)
	if nonRoot == nil || !*nonRoot {
		t.Errorf("container %s: runAsNonRoot is not true", c.Name)
	}
	if uid := firstSet(sc.RunAsUser, psc.RunAsUser); uid != nil && *uid == 0 {
		t.Errorf("container %s: runAsUser is 0", c.Name)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container %s: capabilities.drop %v lacks ALL", c.Name, sc.Capabilities.Drop)
	}
	seccomp := sc.SeccompProfile.Type
	if seccomp == "" {
		seccomp = psc.SeccompProfile.Type
	}
	if seccomp != "RuntimeDefault" {
		t.Errorf("container %s: seccompProfile is %q, want RuntimeDefault", c.Name, seccomp)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" {
			t.Errorf("container %s: no %s request", c.Name, r)
		}
	}
	if c.Resources.Limits["memory"] == "" {
		t.Errorf("container %s: no memory limit", c.Name)
	}
}

// firstSet returns the first non-nil pointer, or nil.
func firstSet[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

// findContainer returns the pod's container with the given name.
func findContainer(pod k8sPodSpec, name string) (k8sContainer, bool) {
	i := slices.IndexFunc(pod.Containers, func(c k8sContainer) bool { return c.Name == name })
	if i < 0 {
		return k8sContainer{}, false
	}
	return pod.Containers[i], true
}

// mountedProxyConfig follows the proxy's --config flag to the volume
// mounted there and the ConfigMap key behind it, and parses that config.
func mountedProxyConfig(
	t *testing.T,
	m k8sManifests,
	pod k8sPodSpec,
	proxy k8sContainer,
) exampleProxyConfig {
	t.Helper()
	return parseExampleProxyConfig(t, mountedProxyConfigText(t, m, pod, proxy))
}

// mountedProxyConfigText returns the config file the proxy container
// reads: its --config flag, the ConfigMap volume mounted at the file's
// folder, and the key of the file's name.
func mountedProxyConfigText(
	t testing.TB,
	m k8sManifests,
	pod k8sPodSpec,
	proxy k8sContainer,
) string {
	t.Helper()
	file := flagValue(proxy.Args, "--config")
	if file == "" {
		t.Fatalf("proxy args %v: no --config", proxy.Args)
	}
	for _, vm := range proxy.VolumeMounts {
		if path.Dir(file) != path.Clean(vm.MountPath) {
			continue
		}
		if !vm.ReadOnly {
			t.Errorf("the config volume %s is not mounted readOnly", vm.Name)
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			for _, cm := range m.configMaps {
				data, ok := cm.Data[path.Base(file)]
				if ok && cm.Metadata.Name == v.ConfigMap.Name {
					return data
				}
			}
			t.Fatalf("no ConfigMap %s with key %s", v.ConfigMap.Name, path.Base(file))
		}
	}
	t.Fatalf("--config %s: no ConfigMap volume is mounted at %s", file, path.Dir(file))
	return ""
}

// checkProbes checks that the proxy's liveness and readiness probes ask
// the health listener for /healthz and /readyz, and that the listener
// takes connections from the kubelet, which probes the pod's IP.
func checkProbes(t *testing.T, proxy k8sContainer, cfg exampleProxyConfig) {
	t.Helper()
	if cfg.Health.ListenAddr == "" {
		t.Fatal("the proxy config has no [health] listen_addr for the probes")
	}
	if !isWildcardAddr(t, cfg.Health.ListenAddr) {
		t.Errorf("[health] listen_addr %s: the kubelet probes the pod IP, "+
			"so listen on every interface", cfg.Health.ListenAddr)
	}
	_, healthPort := splitAddr(t, cfg.Health.ListenAddr)
	probes := []struct {
		name  string
		probe *k8sProbe
		path  string
	}{
		{"livenessProbe", proxy.LivenessProbe, "/healthz"},
		{"readinessProbe", proxy.ReadinessProbe, "/readyz"},
	}
	for _, p := range probes {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || (g.Scheme != "" && g.Scheme != "HTTP") {
			t.Errorf("%s: %s %s, want HTTP %s", p.name, g.Scheme, g.Path, p.path)
		}
		if port, ok := resolvePort(proxy, g.Port); !ok || port != healthPort {
			t.Errorf("%s: port %q is not the health listener's %d", p.name, g.Port, healthPort)
		}
	}
}

// resolvePort turns a port given by number or by container port name into
// a number.
func resolvePort(c k8sContainer, p intOrString) (int, bool) {
	if n, err := strconv.Atoi(string(p)); err == nil {
		return n, true
	}
	for _, cp := range c.Ports {
		if cp.Name == string(p) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// portName returns the name of a container's port with the given number.
func portName(c k8sContainer, port int) (string, bool) {
	for _, cp := range c.Ports {
		if cp.ContainerPort == port && cp.Name != "" {
			return cp.Name, true
		}
	}
	return "", false
}

// checkSecretMount checks that every certificate file the config names
// comes from a Secret volume mounted read-only, with a mode that keeps the
// key from other users, readable through fsGroup.
func checkSecretMount(t *testing.T, pod k8sPodSpec, proxy k8sContainer, cfg exampleProxyConfig) {
	t.Helper()
	files := cfg.certFiles("/")
	if len(files) == 0 {
		t.Fatal("the proxy config names no certificate files")
	}
	for _, f := range files {
		checkFileFromSecret(t, pod, proxy, f)
	}
}

// checkFileFromSecret checks the mount that a certificate file comes from.
func checkFileFromSecret(t *testing.T, pod k8sPodSpec, proxy k8sContainer, file string) {
	t.Helper()
	for _, vm := range proxy.VolumeMounts {
		if !underDir(file, vm.MountPath) {
			continue
		}
		if !vm.ReadOnly {
			t.Errorf("%s: volume %s is not mounted readOnly", file, vm.Name)
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.Secret == nil {
				t.Errorf("%s: volume %s is not a Secret", file, v.Name)
				return
			}
			mode := v.Secret.DefaultMode
			if mode == nil {
				t.Errorf("%s: Secret volume %s: no defaultMode (the default is 0644)",
					file, v.Name)
			} else if *mode != 0o400 && *mode != 0o440 {
				t.Errorf("%s: Secret volume %s: defaultMode %#o, want 0400 or 0440",
					file, v.Name, *mode)
			}
			if pod.SecurityContext.FSGroup == nil {
				t.Errorf("%s: no fsGroup: the non-root proxy could not read the key", file)
			}
			return
		}
	}
	t.Errorf("%s: no volume of the proxy container is mounted there", file)
}

// checkDaemonsOnLoopback checks that every other container (the daemon)
// serves its diag server on loopback, at the proxy's upstream address.
func checkDaemonsOnLoopback(t *testing.T, pod k8sPodSpec, cfg exampleProxyConfig) {
	t.Helper()
	upstream := cfg.upstreamHostPort(t)
	for _, c := range pod.Containers {
		if c.Name == proxyContainerName {
			continue
		}
		listen := flagValue(c.Args, "--listen")
		if listen == "" || !isLoopbackAddr(t, listen) {
			t.Errorf("container %s: --listen %q, want a loopback address", c.Name, listen)
		}
		if listen != upstream {
			t.Errorf("container %s listens on %s, the proxy's upstream is %s",
				c.Name, listen, upstream)
		}
	}
}

// servicesSelecting returns the Services whose selector matches labels.
func servicesSelecting(m k8sManifests, labels map[string]string) []k8sService {
	var out []k8sService
	for _, s := range m.services {
		if len(s.Spec.Selector) > 0 && subset(s.Spec.Selector, labels) {
			out = append(out, s)
		}
	}
	return out
}

// subset reports whether every label of want is in have.
func subset(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// checkService checks that a Service exposes the metrics listener by name
// and never the plain-text health listener.
func checkService(t *testing.T, svc k8sService, proxy k8sContainer, cfg exampleProxyConfig) {
	t.Helper()
	metricsPort := cfg.metricsPort(t)
	_, healthPort := splitAddr(t, cfg.Health.ListenAddr)
	exposed := false
	for _, p := range svc.Spec.Ports {
		target, ok := resolvePort(proxy, p.TargetPort)
		if p.TargetPort == "" {
			target, ok = p.Port, true
		}
		if !ok {
			t.Errorf("Service %s port %s: targetPort %q names no port of the proxy",
				svc.Metadata.Name, p.Name, p.TargetPort)
		}
		if target == healthPort {
			t.Errorf("Service %s exposes the health listener (%d)", svc.Metadata.Name, target)
		}
		if target == metricsPort && p.Name != "" {
			exposed = true
		}
	}
	if !exposed {
		t.Errorf("Service %s has no named port for the metrics listener (%d)",
			svc.Metadata.Name, metricsPort)
	}
}

// checkServiceMonitors checks the ServiceMonitors that select a Service:
// every endpoint names one of its ports and scrapes over https with a
// CA, a client certificate and key from Secrets, and a server name; the
// endpoints cover the daemon's metrics and the proxy's own.
func checkServiceMonitors(t *testing.T, m k8sManifests, svc k8sService, cfg exampleProxyConfig) {
	t.Helper()
	ports := map[string]bool{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = true
	}
	found := false
	for _, sm := range m.serviceMonitors {
		sel := sm.Spec.Selector.MatchLabels
		if len(sel) == 0 || !subset(sel, svc.Metadata.Labels) {
			continue
		}
		found = true
		paths := map[string]bool{}
		for i, ep := range sm.Spec.Endpoints {
			where := fmt.Sprintf("ServiceMonitor %s endpoint %d", sm.Metadata.Name, i)
			if !ports[ep.Port] {
				t.Errorf("%s: port %q is not a port name of Service %s",
					where, ep.Port, svc.Metadata.Name)
			}
			if ep.Scheme != "https" {
				t.Errorf("%s: scheme %q, want https", where, ep.Scheme)
			}
			tc := ep.TLSConfig
			refs := []secretRef{tc.CA.Secret, tc.Cert.Secret, tc.KeySecret}
			incomplete := func(r secretRef) bool { return r.Name == "" || r.Key == "" }
			if tc.ServerName == "" || slices.ContainsFunc(refs, incomplete) {
				t.Errorf("%s: tlsConfig wants serverName and ca, cert and keySecret "+
					"from Secrets; got %+v", where, tc)
			}
			paths[cmp.Or(ep.Path, "/metrics")] = true
		}
		if cfg.ownMetricsPath() == "" {
			t.Error("the proxy config turns the proxy's own metrics off")
		}
		for _, p := range []string{cfg.metricsPath(), cfg.ownMetricsPath()} {
			if !paths[p] {
				t.Errorf("ServiceMonitor %s: no endpoint scrapes %s", sm.Metadata.Name, p)
			}
		}
	}
	if !found {
		t.Errorf("no ServiceMonitor selects Service %s", svc.Metadata.Name)
	}
}

// TestExampleKubernetesSDMatchesService checks that a Prometheus config
// using Kubernetes service discovery keeps the port the example Service
// names, and verifies the server name the ServiceMonitor verifies.
func TestExampleKubernetesSDMatchesService(t *testing.T) {
	m := loadK8sManifests(t)
	portNames := map[string]bool{}
	for _, s := range m.services {
		for _, p := range s.Spec.Ports {
			portNames[p.Name] = true
		}
	}
	serverNames := map[string]bool{}
	for _, sm := range m.serviceMonitors {
		for _, ep := range sm.Spec.Endpoints {
			serverNames[ep.TLSConfig.ServerName] = true
		}
	}

	checked := 0
	for _, f := range examplesOf(t, kindPrometheus) {
		for _, sc := range promScrapeConfigs(t, f.path) {
			if len(sc.KubernetesSDConfigs) == 0 {
				continue
			}
			checked++
			where := filepath.Base(f.rel) + " job " + sc.JobName
			// The keep rule below reads a label of the endpoints role.
			for _, sd := range sc.KubernetesSDConfigs {
				if sd.Role != "endpoints" {
					t.Errorf("%s: kubernetes_sd_configs role %q, want endpoints", where, sd.Role)
				}
			}
			if !keepsPortName(sc, portNames) {
				t.Errorf("%s: no keep rule on __meta_kubernetes_endpoint_port_name "+
					"for a Service port name in %v", where, slices.Sorted(maps.Keys(portNames)))
			}
			if !serverNames[sc.TLSConfig.ServerName] {
				t.Errorf("%s: tls_config server_name %q; pods are scraped by IP, and "+
					"the ServiceMonitor verifies %v", where, sc.TLSConfig.ServerName,
					slices.Sorted(maps.Keys(serverNames)))
			}
		}
	}
	if checked == 0 {
		t.Fatal("no Prometheus example uses kubernetes_sd_configs")
	}
}

// promScrapeConfigs decodes the scrape configs of a Prometheus config.
func promScrapeConfigs(t testing.TB, file string) []promScrapeConfig {
	t.Helper()
	docs, err := yamlDocuments(file)
	if err != nil || len(docs) != 1 {
		t.Fatalf("%s: want one YAML document, got %d: %v", file, len(docs), err)
	}
	var c promConfig
	if err := docs[0].Decode(&c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c.ScrapeConfigs
}

// keepsPortName reports whether a scrape config keeps only targets whose
// endpoint port has one of the names.
func keepsPortName(sc promScrapeConfig, names map[string]bool) bool {
	for _, rc := range sc.RelabelConfigs {
		if rc.Action == "keep" &&
			slices.Equal(rc.SourceLabels, []string{"__meta_kubernetes_endpoint_port_name"}) &&
			names[rc.Regex] {
			return true
		}
	}
	return false
}
