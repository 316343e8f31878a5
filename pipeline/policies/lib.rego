# Shared helpers for the policies in this folder (Rego v1).
#
# conftest evaluates every YAML document on its own, so `input` is a single
# Kubernetes object, or null / a scalar for empty documents: every helper
# below is simply undefined in that case, so no rule fires and nothing errors.
#
# Message format (parsed by the Python pipeline, keep it stable):
#   container-level: "<Kind>/<name>: container '<container>' <problem>"
#   resource-level:  "<Kind>/<name>: <problem>"
package gitops_pipeline.lib

# Workload kinds whose pod template lives in spec.template.
template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

# Long-running workloads: they must declare readiness and liveness probes.
long_running_kinds := {"Deployment", "StatefulSet", "DaemonSet", "Rollout"}

kind := input.kind if is_string(input.kind)

name := n if {
	is_object(input)
	n := object.get(input, ["metadata", "name"], "<unnamed>")
}

is_rollout if {
	input.kind == "Rollout"
	startswith(input.apiVersion, "argoproj.io/")
}

# Path of the pod template (metadata + spec) inside the object, or undefined
# when the object has none (e.g. a Rollout using spec.workloadRef).
pod_template_path := ["spec", "template"] if {
	template_kinds[input.kind]
	is_object(input.spec.template)
}

pod_template_path := ["spec", "template"] if {
	is_rollout
	is_object(input.spec.template)
}

pod_template_path := ["spec", "jobTemplate", "spec", "template"] if {
	input.kind == "CronJob"
	is_object(input.spec.jobTemplate.spec.template)
}

# The object is a workload we check (has a pod spec).
is_workload if pod_spec

# The PodSpec of the object.
pod_spec := input.spec if {
	input.kind == "Pod"
	input.apiVersion == "v1"
	is_object(input.spec)
}

pod_spec := s if {
	s := object.get(input, array.concat(pod_template_path, ["spec"]), null)
	is_object(s)
}

# Labels of the pod template (undefined for bare Pods).
pod_template_labels := object.get(input, array.concat(pod_template_path, ["metadata", "labels"]), {})

# Human-readable path of the pod template labels, for messages.
pod_template_labels_path := concat(".", array.concat(pod_template_path, ["metadata", "labels"]))

# Every container of the pod: containers, initContainers, ephemeralContainers.
all_containers contains c if {
	some field in ["containers", "initContainers", "ephemeralContainers"]
	some c in object.get(pod_spec, field, [])
	is_object(c)
}

# containers + initContainers (ephemeral containers may not declare
# resources or probes, so the resources rule skips them).
containers contains c if {
	some field in ["containers", "initContainers"]
	some c in object.get(pod_spec, field, [])
	is_object(c)
}

# Only the regular (long-running) containers.
main_containers contains c if {
	some c in object.get(pod_spec, "containers", [])
	is_object(c)
}

container_name(c) := object.get(c, "name", "<unnamed>")

# "<Kind>/<name>: <problem>"
resource_msg(problem) := sprintf("%s/%s: %s", [kind, name, problem])

# "<Kind>/<name>: container '<container>' <problem>"
container_msg(c, problem) := sprintf("%s/%s: container '%s' %s", [kind, name, container_name(c), problem])

# --- images -----------------------------------------------------------------

# OCI digest: algorithm ":" encoded (https://github.com/opencontainers/image-spec/blob/main/descriptor.md#digests)
digest_pattern := `@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$`

image_has_digest(image) if regex.match(digest_pattern, image)

# The tag of an image reference, undefined when there is none. The tag is
# after the last ':' of the last path component, so a registry port
# (localhost:5000/app) is not mistaken for a tag.
image_tag(image) := tag if {
	ref := split(image, "@")[0]
	parts := split(ref, "/")
	last := parts[count(parts) - 1]
	contains(last, ":")
	segs := split(last, ":")
	tag := segs[count(segs) - 1]
	tag != ""
}
