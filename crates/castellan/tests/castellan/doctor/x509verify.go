// Verifies a certificate chain with Go's crypto/x509, as a Go service would: the doctor's tests check
// their claims about Go against this (issue 23).
//
//	x509verify -roots CAFILE -chain CHAIN [-host NAME] [-client]
//
// Prints "ok", or Go's error and exits 1.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
)

func load(path string) []*x509.Certificate {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Println("cannot read", path, err)
		os.Exit(2)
	}
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			fmt.Println("cannot parse", path, err)
			os.Exit(2)
		}
		out = append(out, c)
	}
}

func main() {
	roots := flag.String("roots", "", "trusted CA file")
	chain := flag.String("chain", "", "leaf, then intermediates")
	host := flag.String("host", "", "host name to check")
	client := flag.Bool("client", false, "client certificate")
	flag.Parse()
	pool := x509.NewCertPool()
	for _, c := range load(*roots) {
		pool.AddCert(c)
	}
	certs := load(*chain)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	usage := x509.ExtKeyUsageServerAuth
	if *client {
		usage = x509.ExtKeyUsageClientAuth
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, DNSName: *host,
		KeyUsages: []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("ok")
}
