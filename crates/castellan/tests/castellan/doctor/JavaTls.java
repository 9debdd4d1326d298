// Java's TLS client (JSSE with PKIX and HTTPS endpoint identification), as a Java service would
// connect: the doctor's tests check their claims about Java against it (issue 23).
//
//   java JavaTls.java CAFILE HOST PORT
//
// Trusts every certificate of CAFILE, connects to 127.0.0.1:PORT sending HOST as the server name,
// and prints "ok" or the handshake's error (exit 1).
import java.io.FileInputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class JavaTls {
    public static void main(String[] args) throws Exception {
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        int n = 0;
        try (FileInputStream in = new FileInputStream(args[0])) {
            for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                ks.setCertificateEntry("ca" + n++, c);
            }
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        Socket raw = new Socket();
        raw.connect(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[2])), 10000);
        SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(raw, args[1], raw.getPort(), true);
        SSLParameters p = s.getSSLParameters();
        p.setEndpointIdentificationAlgorithm("HTTPS");
        s.setSSLParameters(p);
        try {
            s.startHandshake();
            System.out.println("ok");
        } catch (Exception e) {
            Throwable t = e;
            StringBuilder msg = new StringBuilder(e.toString());
            while ((t = t.getCause()) != null) {
                msg.append(" / ").append(t.toString());
            }
            System.out.println(msg);
            System.exit(1);
        } finally {
            s.close();
        }
    }
}
