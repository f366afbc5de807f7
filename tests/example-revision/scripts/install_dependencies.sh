#!/bin/sh
# BeforeInstall: prepare the host (directories the application needs).
set -eu
echo "[$LIFECYCLE_EVENT] preparing directories for $APPLICATION_NAME ($DEPLOYMENT_GROUP_NAME)"
mkdir -p "@INSTALL_ROOT@/run" "@INSTALL_ROOT@/var/log/hello-web"
echo "revision s3://$BUNDLE_BUCKET/$BUNDLE_KEY version ${BUNDLE_VERSION:-none}"
