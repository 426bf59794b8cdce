"""Where things are in the cluster: our namespaces, the names the operators give what they create,
and the Secrets the user creates before applying (no password is ever in the manifests)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class KubernetesSetup:
    """The cluster the manifests are rendered for. `make generate` renders the defaults into
    deploy/kubernetes/; `python -m mlobs.generate.kubernetes` renders other values elsewhere."""

    namespace: str = "mlobs"  # model servers, alert-sink, the Elastic Stack
    # Where kube-prometheus-stack runs Grafana and Alertmanager.
    monitoring_namespace: str = "monitoring"
    # kube-prometheus-stack's Helm release: by default its Prometheus selects only
    # ServiceMonitors and PrometheusRules labelled release=<release name> (chart values
    # serviceMonitorSelectorNilUsesHelmValues, ruleSelectorNilUsesHelmValues: true).
    release: str = "kube-prometheus-stack"

    def __post_init__(self) -> None:
        for field in ("namespace", "monitoring_namespace"):
            value = getattr(self, field)
            if not _DNS_LABEL.match(value):
                raise ValueError(f"{field} {value!r} is not a Kubernetes namespace name")

    def service_url(self, service: str, port: int, scheme: str = "http") -> str:
        """The URL of a Service of our namespace, as seen from another namespace."""
        return f"{scheme}://{service}.{self.namespace}.svc:{port}"


# The Elasticsearch, Kibana, Logstash and Beat resources are all called this; ECK names what it
# creates after them (elastic/cloud-on-k8s v3.5.0, pkg/apis/*/name.go and
# pkg/controller/common/certificates/secret.go).
ELASTIC_NAME = "mlobs"
ES_SERVICE = f"{ELASTIC_NAME}-es-http"  # TLS with ECK's self-signed CA; the certificate names
# the short name and <service>.<namespace>(.svc) (certificates/http_reconcile.go)
ES_PORT = 9200
ES_CA_SECRET = f"{ELASTIC_NAME}-es-http-certs-public"  # key ca.crt
ES_ELASTIC_USER_SECRET = f"{ELASTIC_NAME}-es-elastic-user"  # key `elastic`: the superuser
KIBANA_SERVICE = f"{ELASTIC_NAME}-kb-http"
KIBANA_PORT = 5601
KIBANA_CA_SECRET = f"{ELASTIC_NAME}-kb-http-certs-public"
LOGSTASH_BEATS_SERVICE_NAME = "beats"  # ECK: Service <logstash>-ls-<name>
LOGSTASH_BEATS_SERVICE = f"{ELASTIC_NAME}-ls-{LOGSTASH_BEATS_SERVICE_NAME}"
BEATS_PORT = 5044  # the beats input of logstash/pipeline/inference.conf

# setup/'s Elasticsearch step logs in as the superuser, whose password ECK creates; the others
# are the passwords it gives the users it creates, from a Secret the user creates in our
# namespace (README), each key named as the variable the step reads.
ELASTIC_PASSWORD_VARIABLE = "ELASTIC_PASSWORD"
CREDENTIALS_SECRET = "mlobs-elastic-credentials"
# The variables of setup's Elasticsearch step besides the elastic password (setup/ is not part
# of the installed package, so they are named here; a test checks each Job against
# setup.elastic_setup.REQUIRED).
CREDENTIALS_KEYS = ("KIBANA_SYSTEM_PASSWORD", "LOGSTASH_WRITER_PASSWORD", "GRAFANA_ES_PASSWORD")
# Grafana gets ECK's CA from the environment (kube-prometheus-stack value grafana.envFromSecrets:
# a Secret the user creates in the monitoring namespace, README).
GRAFANA_CA_VARIABLE = "GRAFANA_ES_CA_CERT"
# kube-prometheus-stack's Prometheus: the operator's governing Service of every Prometheus
# resource in a namespace (prometheus-operator v0.93.0 pkg/prometheus/server/statefulset.go,
# governingServiceName), whatever the release is called.
PROMETHEUS_SERVICE = "prometheus-operated"
PROMETHEUS_PORT = 9090
