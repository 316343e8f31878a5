# Shared test fixtures (used by every *_test.rego in package main) and tests
# of the helpers in lib.rego.
package gitops_pipeline

import data.gitops_pipeline.lib

good_labels := {"app.kubernetes.io/name": "web"}

good_container := {
	"name": "app",
	"image": "ghcr.io/acme/web:1.2.3",
	"securityContext": {
		"allowPrivilegeEscalation": false,
		"readOnlyRootFilesystem": true,
		"capabilities": {"drop": ["ALL"]},
	},
	"resources": {
		"requests": {"cpu": "50m", "memory": "64Mi"},
		"limits": {"memory": "128Mi"},
	},
	"readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
	"livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
}

good_init_container := object.remove(object.union(good_container, {"name": "init"}), ["readinessProbe", "livenessProbe"])

good_pod_spec := {
	"securityContext": {"runAsNonRoot": true, "runAsUser": 10001},
	"initContainers": [good_init_container],
	"containers": [good_container],
}

good_template := {"metadata": {"labels": good_labels}, "spec": good_pod_spec}

good_deployment := {
	"apiVersion": "apps/v1",
	"kind": "Deployment",
	"metadata": {"name": "web", "labels": good_labels},
	"spec": {
		"selector": {"matchLabels": good_labels},
		"template": good_template,
	},
}

# A compliant object of every workload kind. Job/CronJob/Pod/ReplicaSet need
# no probes, but having them does not hurt.
good_workloads := {
	"Pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": good_labels}, "spec": good_pod_spec},
	"Deployment": good_deployment,
	"StatefulSet": object.union(good_deployment, {"apiVersion": "apps/v1", "kind": "StatefulSet"}),
	"DaemonSet": object.union(good_deployment, {"apiVersion": "apps/v1", "kind": "DaemonSet"}),
	"ReplicaSet": object.union(good_deployment, {"apiVersion": "apps/v1", "kind": "ReplicaSet"}),
	"Job": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "web", "labels": good_labels}, "spec": {"template": good_template}},
	"CronJob": {
		"apiVersion": "batch/v1", "kind": "CronJob",
		"metadata": {"name": "web", "labels": good_labels},
		"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": good_template}}},
	},
	"Rollout": object.union(good_deployment, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout"}),
}

# Path of the PodSpec inside each kind, as a JSON pointer (for json.patch).
pod_spec_pointer := {
	"Pod": "/spec",
	"Deployment": "/spec/template/spec",
	"StatefulSet": "/spec/template/spec",
	"DaemonSet": "/spec/template/spec",
	"ReplicaSet": "/spec/template/spec",
	"Job": "/spec/template/spec",
	"CronJob": "/spec/jobTemplate/spec/template/spec",
	"Rollout": "/spec/template/spec",
}

# good_deployment with one JSON patch operation applied.
deployment_patched(op, path, value) := json.patch(good_deployment, [{"op": op, "path": path, "value": value}])

deployment_without(path) := json.patch(good_deployment, [{"op": "remove", "path": path}])

# good_deployment whose only container is `container`.
deployment_with_container(container) := deployment_patched("replace", "/spec/template/spec/containers", [container])

# --- tests --------------------------------------------------------------------

test_good_workloads_pass if {
	every obj in good_workloads {
		count(deny) == 0 with input as obj
	}
}

test_empty_documents_pass if {
	count(deny) == 0 with input as null
	count(deny) == 0 with input as {}
	count(deny) == 0 with input as []
	count(deny) == 0 with input as "text"
	count(deny) == 0 with input as {"kind": "Deployment"}
	count(deny) == 0 with input as {"kind": "Deployment", "spec": null}
}

test_non_workloads_pass if {
	count(deny) == 0 with input as {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
	count(deny) == 0 with input as {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "data": {"a": "b"}}
	count(deny) == 0 with input as {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}}
}

# The pod spec of every kind is found: a privileged container is reported
# with the right kind in the message.
test_every_workload_kind_is_checked if {
	every k, obj in good_workloads {
		bad := json.patch(obj, [{"op": "add", "path": sprintf("%s/containers/0/securityContext/privileged", [pod_spec_pointer[k]]), "value": true}])
		msg := sprintf("%s/web: container 'app' must not be privileged (securityContext.privileged: true)", [k])
		deny[msg] with input as bad
	}
}

test_rollout_with_workload_ref_is_not_checked if {
	rollout := {
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": {"name": "web"},
		"spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
	}
	count(deny) == 0 with input as rollout
}

test_rollout_of_other_api_group_is_ignored if {
	other := object.union(good_workloads.Rollout, {"apiVersion": "example.com/v1"})
	bad := json.patch(other, [{"op": "add", "path": "/spec/template/spec/hostNetwork", "value": true}])
	count(deny) == 0 with input as bad
}

test_unnamed_object if {
	bad := json.patch(good_deployment, [
		{"op": "remove", "path": "/metadata/name"},
		{"op": "add", "path": "/spec/template/spec/hostPID", "value": true},
	])
	deny["Deployment/<unnamed>: must not set hostPID: true"] with input as bad
}

test_container_msg_format if {
	lib.container_msg({"name": "c"}, "is bad") == "Deployment/web: container 'c' is bad" with input as good_deployment
	lib.resource_msg("is bad") == "Deployment/web: is bad" with input as good_deployment
}

test_image_tag if {
	lib.image_tag("nginx:1.27") == "1.27"
	lib.image_tag("ghcr.io/acme/chat:1.0.0") == "1.0.0"
	lib.image_tag("localhost:5000/app:v2") == "v2"
	lib.image_tag("registry.example.com:443/team/app:latest") == "latest"
	lib.image_tag("nginx:1.27@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") == "1.27"
	not lib.image_tag("nginx")
	not lib.image_tag("localhost:5000/app")
	not lib.image_tag("registry.example.com:443/team/app")
	not lib.image_tag("nginx:")
}

test_image_digest if {
	lib.image_has_digest("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	lib.image_has_digest("localhost:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	not lib.image_has_digest("nginx:1.27")
	not lib.image_has_digest("nginx@sha256:")
}
