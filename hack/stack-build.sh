#!/usr/bin/env bash
# Builds or fetches the third-party servers of the local test stack into the cache
# (never into the repository). Sourced by hack/stack.sh; each build_* function is a
# no-op when its output is already in the cache.

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.17}"
# Consul 1.16.x and 1.15.x need the envoyextensions and troubleshoot submodules, which
# the module proxy of this environment does not serve for use. 1.14.x does not need them
# and is MPL-2.0.
CONSUL_VERSION="${CONSUL_VERSION:-v1.14.11}"
KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
LOG4J_VERSION="${LOG4J_VERSION:-2.26.1}"
HELM_VERSION="${HELM_VERSION:-v4.3.2}"

go_env() {
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
  export GOPROXY="${GOPROXY_OVERRIDE:-https://proxy.golang.org}"
  export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
}

# Prints "module version" for every require line of a go.mod file.
gomod_requires() {
  awk '
    /^require \($/ { inblock = 1; next }
    inblock && /^\)/ { inblock = 0; next }
    inblock && NF >= 2 && $1 !~ /^\/\// { print $1, $2; next }
    /^require [^(]/ { print $2, $3 }
  ' "$1"
}

# Prints "module target" for every replace directive whose target is a local path.
gomod_local_replaces() {
  awk '
    /^replace \($/ { inblock = 1; next }
    inblock && /^\)/ { inblock = 0; next }
    inblock && $2 == "=>" && $3 ~ /^\.\.?\// { print $1, $3; next }
    /^replace / && $3 == "=>" && $4 ~ /^\.\.?\// { print $2, $4 }
  ' "$1"
}

# Prints the exclude lines of a go.mod as "module version".
gomod_excludes() {
  awk '
    /^exclude \($/ { inblock = 1; next }
    inblock && /^\)/ { inblock = 0; next }
    inblock && NF >= 2 && $1 !~ /^\/\// { print $1, $2; next }
    /^exclude [^(]/ { print $2, $3 }
  ' "$1"
}

# Creates a throwaway main module in $1 that requires $2@$3 and replaces each of the
# dependency's local-path replaces with the published module: at the version the
# dependency requires, or at $4 when it requires a placeholder (v0.0.0).
make_throwaway_module() {
  local dir="$1" module="$2" version="$3" placeholder_version="$4"
  rm -rf "$dir"
  mkdir -p "$dir"
  (
    cd "$dir"
    go mod init "stackbuild.invalid/$(basename "$dir")" >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "$module@$version" | awk -F'"' '/"GoMod"/ { print $4 }')
    [[ -f "$gomod" ]] || { echo "go.mod of $module@$version not found" >&2; exit 1; }
    local requires
    requires=$(gomod_requires "$gomod")
    go mod edit -require "$module@$version"
    local name target required
    while read -r name target; do
      [[ -n "$name" ]] || continue
      required=$(awk -v m="$name" '$1 == m { print $2 }' <<<"$requires" | head -1)
      # A replaced module that the dependency does not require never enters the build.
      [[ -n "$required" ]] || continue
      if [[ "$required" == v0.0.0 || "$required" == v0.0.0-* ]]; then
        required="$placeholder_version"
      fi
      go mod edit -replace "$name=$name@$required"
    done < <(gomod_local_replaces "$gomod")
    while read -r name required; do
      [[ -n "$name" ]] && go mod edit -exclude "$name@$required"
    done < <(gomod_excludes "$gomod")
  )
}

kube_built() { [[ -x "$BIN/kube-apiserver" && -x "$BIN/kubectl" && -f "$BIN/.kube-$KUBERNETES_VERSION" ]]; }
build_kube() {
  local dir="$CACHE/src/kube" minor_patch="${KUBERNETES_VERSION#v1.}"
  local major=1 minor="${minor_patch%%.*}"
  make_throwaway_module "$dir" k8s.io/kubernetes "$KUBERNETES_VERSION" "v0.$minor_patch"
  local ldflags="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  done
  (
    cd "$dir"
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES_VERSION"
    go build -trimpath -ldflags "$ldflags" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
    go build -trimpath -ldflags "$ldflags" -o "$BIN/kubectl" k8s.io/kubernetes/cmd/kubectl
  )
  touch "$BIN/.kube-$KUBERNETES_VERSION"
}

etcd_built() { [[ -x "$BIN/etcd" && -f "$BIN/.etcd-$ETCD_VERSION" ]]; }
build_etcd() {
  local dir="$CACHE/src/etcd"
  make_throwaway_module "$dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION"
  (
    cd "$dir"
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  )
  touch "$BIN/.etcd-$ETCD_VERSION"
}

consul_built() { [[ -x "$BIN/consul" && -f "$BIN/.consul-$CONSUL_VERSION" ]]; }
build_consul() {
  local dir="$CACHE/src/consul"
  make_throwaway_module "$dir" github.com/hashicorp/consul "$CONSUL_VERSION" ""
  (
    cd "$dir"
    go get "github.com/hashicorp/consul@$CONSUL_VERSION"
    go build -trimpath -ldflags "-s -w -X github.com/hashicorp/consul/version.GitCommit=module-$CONSUL_VERSION" \
      -o "$BIN/consul" github.com/hashicorp/consul
  )
  touch "$BIN/.consul-$CONSUL_VERSION"
}

helm_built() { [[ -x "$BIN/helm" && -f "$BIN/.helm-$HELM_VERSION" ]]; }
build_helm() {
  GOBIN="$BIN" go install -trimpath "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  touch "$BIN/.helm-$HELM_VERSION"
}

kafka_libs() { echo "$CACHE/kafka-$KAFKA_VERSION/libs"; }
kafka_built() { [[ -f "$CACHE/kafka-$KAFKA_VERSION/.complete" ]]; }
build_kafka() {
  local libs
  libs=$(kafka_libs)
  local dir="$CACHE/src/kafka"
  rm -rf "$dir" "$libs"
  mkdir -p "$dir" "$libs"
  cat >"$dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>invalid.stackbuild</groupId>
  <artifactId>kafka-server</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  mvn -B -q -f "$dir/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs"
  touch "$CACHE/kafka-$KAFKA_VERSION/.complete"
}

# Debian packages: PostgreSQL server, kcat, and the headers rdkafka links against.
debian_built() { [[ -z "$(missing_debian_packages)" ]]; }
missing_debian_packages() {
  local missing=()
  pg_bindir >/dev/null 2>&1 || missing+=(postgresql)
  command -v kcat >/dev/null 2>&1 || missing+=(kcat)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v jq >/dev/null 2>&1 || missing+=(jq)
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  [[ -f /usr/include/openssl/ssl.h ]] || missing+=(libssl-dev)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  echo "${missing[*]}"
}
build_debian() {
  local missing
  read -r -a missing <<<"$(missing_debian_packages)"
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}
pg_bindir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x "$dir/postgres" ]] && { echo "$dir"; return 0; }
  done
  return 1
}
