// etcd: same as upstream go.etcd.io/etcd/server/v3/main.go, i.e. the real etcd CLI
// (all standard etcd flags), at the go.etcd.io/etcd/server/v3 version that
// k8s.io/kubernetes pins in its go.mod (v3.6.4 for k8s v1.34.4).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
