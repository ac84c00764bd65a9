import Foundation
import MediagateTestSupport
import Testing

/// The IETF resumable-upload draft on the wire, per interop version, checked by raw sockets
/// (Tests/Helpers/resumable_draft_check.py) against the real `mediagate serve`.
@Suite("IETF resumable uploads")
struct ResumableDraftTests {
    @Test("interop 3, 5, 6, 7, 8: creation, 104, offset, append, completion, cancellation, every refusal; the seed upload cut at 40 % and resumed")
    func wireChecks() async throws {
        let gateway = try await LiveGateway.start("resumable-draft")
        defer { gateway.stop() }
        let token = try await gateway.token()
        let other = try await gateway.api("POST", "/api/auth/register", token: "",
                                          body: ["username": "mallory", "password": "another long password"])
        let otherToken = try #require((other.json as? [String: Any])?["access_token"] as? String, "\(other)")
        // The seed app's multipart request of a real video, cut by the proxy at 40 % of its bytes
        // (slowed so that the 104 is through before the cut, as on a real network).
        let sample = Fixtures.media("clip-h264.mp4")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: sample)[.size] as? Int)
        let cut = size * 2 / 5
        let proxy = try await gateway.faultProxy(["--cut-at", String(cut), "--rate", "200000"])
        let proxyPort = try #require(URL(string: proxy.url)?.port)
        let database = (gateway.data as NSString).appendingPathComponent("chat.sqlite")
        let check = try await Tool.run("python3", [
            Fixtures.packageRoot.appendingPathComponent("Tests/Helpers/resumable_draft_check.py").path,
            String(gateway.port), token, otherToken, sample, database, "--proxy-port", String(proxyPort), "--cut-at", String(cut),
        ])
        #expect(check.status == 0, "\(check.stdout.suffix(4000)) \(check.stderr.suffix(2000))")
        for version in [3, 5, 6, 7, 8] { #expect(check.stdout.contains("=== interop \(version): ok")) }
        #expect(check.stdout.contains("=== seed upload, interop 3: cut at"))
        #expect(check.stdout.contains("=== seed upload, interop 6: cut at"))
        #expect(try proxy.stats()["cuts", default: 0] >= 2)
    }
}
