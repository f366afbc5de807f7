#!/bin/sh
# AfterInstall: the files are in place; finish the configuration.
set -eu
DOCROOT="@INSTALL_ROOT@/var/www/hello-web"
echo "[$LIFECYCLE_EVENT] writing build info into $DOCROOT"
cat > "$DOCROOT/build-info.txt" <<INFO
deployment=$DEPLOYMENT_ID
group=$DEPLOYMENT_GROUP_NAME
etag=${BUNDLE_ETAG:-unknown}
INFO
echo "configuration from @INSTALL_ROOT@/etc/hello-web/hello-web.env:"
cat "@INSTALL_ROOT@/etc/hello-web/hello-web.env"
