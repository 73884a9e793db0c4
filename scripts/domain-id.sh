#!/usr/bin/env bash
# Print the default ROS_DOMAIN_ID of this checkout: 1..100, derived from its path.
# Two checkouts on one machine (developers, CI runs) then do not share a DDS domain by default:
# on a shared domain a second charger answers the other's goals ("unexpected goal response").
# An explicit ROS_DOMAIN_ID always wins (setup.sh, test.sh and .ci/run only use this if unset).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sum=$(printf '%s' "$repo" | cksum | cut -d' ' -f1)
echo $((1 + sum % 100))
