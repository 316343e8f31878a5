# Resource requests and limits: CPU and memory requests and a memory limit on
# every container and initContainer (a CPU limit is optional: it only causes
# throttling; ephemeral containers cannot declare resources).
package gitops_pipeline

import data.gitops_pipeline.lib

required_resources := [
	["requests", "cpu", "must set a CPU request (resources.requests.cpu)"],
	["requests", "memory", "must set a memory request (resources.requests.memory)"],
	["limits", "memory", "must set a memory limit (resources.limits.memory)"],
]

deny contains msg if {
	some c in lib.containers
	some [section, resource, problem] in required_resources
	not has_resource(c, section, resource)
	msg := lib.container_msg(c, problem)
}

has_resource(c, section, resource) if {
	v := c.resources[section][resource]
	v != null
	v != ""
}
