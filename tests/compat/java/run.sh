#!/usr/bin/env bash
# The Java client checks (kafka-clients from Maven Central) against a running broker.
# .ci/run fetches the client into target/lib beforehand; run by hand, this fetches it on first
# use (needs Maven and Java 17).
#
# Usage: tests/compat/java/run.sh [HOST:PORT]      (default localhost:9092)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bootstrap="${1:-localhost:9092}"
if [ ! -f "$here/target/lib/.fetched" ]; then
    "${MVN:-mvn}" -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$here/target/lib"
    touch "$here/target/lib/.fetched"
fi
exec "${JAVA:-java}" -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$here/target/lib/*" \
    "$here/TxnCheck.java" "$bootstrap"
