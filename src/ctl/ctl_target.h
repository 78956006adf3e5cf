// How vtpmctl names an instance (vtpmctl(8) "INSTANCES"): a uuid, a domain
// name or a domid, like xl and virsh name domains.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "common/uuid.h"

namespace vtpm::ctl {

// Whether `text` must be looked up in the daemon's list (it is not a uuid).
bool NeedsLookup(const std::string& text);

// The instance `text` names in `list_data` (the data of a `list` answer):
// a uuid is taken as it is; digits are a domid; anything else is a domain
// name (/local/domain/<domid>/name). Errors: kInvalidArgument for the nil
// uuid or a malformed one, kNotFound when no attached instance matches
// (naming the domains that have one), kAlreadyExists when several match
// (naming them: use the uuid).
Result<Uuid> ResolveInstance(const std::string& text, const nlohmann::json& list_data);

}  // namespace vtpm::ctl
