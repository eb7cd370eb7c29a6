package integration

import (
	"fmt"
	"path"
	"testing"

	"go.yaml.in/yaml/v3"
)

// proxyContainerName is the name of the sidecar in the example Deployment.
const proxyContainerName = "mtls-metrics-proxy"

// objectMeta is the part of a Kubernetes object's metadata the tests read.
type objectMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

// k8sConfigMap is a ConfigMap.
type k8sConfigMap struct {
	Metadata objectMeta        `yaml:"metadata"`
	Data     map[string]string `yaml:"data"`
}

// k8sDeployment is a Deployment, down to the fields the tests check.
type k8sDeployment struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// k8sPodSpec is a pod template's spec.
type k8sPodSpec struct {
	SecurityContext struct {
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		RunAsUser      *int64 `yaml:"runAsUser"`
		FSGroup        *int64 `yaml:"fsGroup"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers []k8sContainer `yaml:"containers"`
	Volumes    []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName  string `yaml:"secretName"`
			DefaultMode *int   `yaml:"defaultMode"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

// k8sContainer is a container of a pod template.
type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe   *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe  *k8sProbe `yaml:"readinessProbe"`
	SecurityContext struct {
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

// k8sProbe is a probe; only HTTP GET probes are expected.
type k8sProbe struct {
	HTTPGet *struct {
		Path   string      `yaml:"path"`
		Port   intOrString `yaml:"port"`
		Scheme string      `yaml:"scheme"`
	} `yaml:"httpGet"`
}

// intOrString is a port given by number or by name.
type intOrString string

// UnmarshalYAML takes a scalar of either type as its text.
func (s *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a port number or name", n.Line)
	}
	*s = intOrString(n.Value)
	return nil
}

// k8sService is a Service.
type k8sService struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

// k8sServiceMonitor is a Prometheus Operator ServiceMonitor.
type k8sServiceMonitor struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Endpoints []struct {
			Port      string `yaml:"port"`
			Scheme    string `yaml:"scheme"`
			Path      string `yaml:"path"`
			TLSConfig struct {
				ServerName string       `yaml:"serverName"`
				CA         secretSource `yaml:"ca"`
				Cert       secretSource `yaml:"cert"`
				KeySecret  secretRef    `yaml:"keySecret"`
			} `yaml:"tlsConfig"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

// secretSource is a ServiceMonitor TLS file taken from a Secret.
type secretSource struct {
	Secret secretRef `yaml:"secret"`
}

// secretRef names a key of a Secret.
type secretRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

// k8sManifests are the Kubernetes objects of the examples, by kind.
type k8sManifests struct {
	deployments     []k8sDeployment
	services        []k8sService
	serviceMonitors []k8sServiceMonitor
	configMaps      []k8sConfigMap
	// resources maps a folder holding a kustomization.yaml to the
	// resources it lists.
	resources map[string][]string
	// files maps a folder to the manifest files in it.
	files map[string][]string
}

// loadK8sManifests parses every Kubernetes example into its kind's type.
// A kind no test knows fails the test.
func loadK8sManifests(t testing.TB) k8sManifests {
	t.Helper()
	m := k8sManifests{resources: map[string][]string{}, files: map[string][]string{}}
	for _, f := range examplesOf(t, kindKubernetes) {
		dir := path.Dir(f.rel)
		m.files[dir] = append(m.files[dir], path.Base(f.rel))
		docs, err := yamlDocuments(f.path)
		if err != nil {
			t.Fatalf("%s: %v", f.rel, err)
		}
		for _, doc := range docs {
			if err := m.add(dir, doc); err != nil {
				t.Errorf("%s: %v", f.rel, err)
			}
		}
	}
	return m
}

// add decodes one document into the list of its kind.
func (m *k8sManifests) add(dir string, doc *yaml.Node) error {
	var head struct {
		Kind      string   `yaml:"kind"`
		Resources []string `yaml:"resources"`
	}
	if err := doc.Decode(&head); err != nil {
		return err
	}
	var err error
	switch head.Kind {
	case "Deployment":
		m.deployments, err = decodeAppend(doc, m.deployments)
	case "Service":
		m.services, err = decodeAppend(doc, m.services)
	case "ServiceMonitor":
		m.serviceMonitors, err = decodeAppend(doc, m.serviceMonitors)
	case "ConfigMap":
		m.configMaps, err = decodeAppend(doc, m.configMaps)
	case "Kustomization":
		m.resources[dir] = head.Resources
	default:
		err = fmt.Errorf("kind %q: no test checks it; teach "+
			"integration/examples_kubernetes_test.go about it", head.Kind)
	}
	return err
}

// decodeAppend decodes a document as a T and appends it to list.
func decodeAppend[T any](doc *yaml.Node, list []T) ([]T, error) {
	var v T
	if err := doc.Decode(&v); err != nil {
		return list, err
	}
	return append(list, v), nil
}

// configMapsIn returns the ConfigMaps of one manifest file.
func configMapsIn(t testing.TB, file string) []k8sConfigMap {
	t.Helper()
	docs, err := yamlDocuments(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out []k8sConfigMap
	for _, doc := range docs {
		var head struct {
			Kind string `yaml:"kind"`
		}
		if err := doc.Decode(&head); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if head.Kind == "ConfigMap" {
			out, err = decodeAppend(doc, out)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
		}
	}
	return out
}
