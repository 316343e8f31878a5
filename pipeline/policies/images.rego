# Images must be pinned: an explicit tag other than "latest", or a digest.
package gitops_pipeline

import data.gitops_pipeline.lib

deny contains msg if {
	some c in lib.all_containers
	not has_image(c)
	msg := lib.container_msg(c, "has no image")
}

deny contains msg if {
	some c in lib.all_containers
	has_image(c)
	not lib.image_has_digest(c.image)
	not lib.image_tag(c.image)
	msg := lib.container_msg(c, sprintf("image '%s' must have an explicit tag or digest", [c.image]))
}

deny contains msg if {
	some c in lib.all_containers
	has_image(c)
	not lib.image_has_digest(c.image)
	lib.image_tag(c.image) == "latest"
	msg := lib.container_msg(c, sprintf("image '%s' must not use the 'latest' tag", [c.image]))
}

# Note: `not is_string(c.image)` would NOT fire when c.image is undefined (OPA
# evaluates the undefined argument outside the negation), hence this helper.
has_image(c) if {
	is_string(c.image)
	c.image != ""
}
