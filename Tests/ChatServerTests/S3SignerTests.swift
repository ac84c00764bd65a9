import Foundation
@testable import MediagateS3
import MediagateTestSupport
import Testing

/// AWS Signature V4 as ours computes it, against botocore's signer (the one the AWS CLI and
/// boto3 use) as the oracle: the same requests, credentials and clock, the same signature.
/// SeaweedFS alone would not do: it accepts a wrong payload hash.
@Suite("S3 signatures agree with botocore")
struct S3SignerTests {
    struct Case {
        var name: String
        var request: SignableRequest
        var payload: String
        var credentials: S3Credentials
        var region = "us-east-1"
        /// Presigned for this many seconds instead of signed in headers.
        var presignExpires: Int?
    }

    static let moment = Date(timeIntervalSince1970: 1_796_341_484) // 2026-12-03T23:44:44Z
    static let credentials = S3Credentials(accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    static let temporary = S3Credentials(accessKeyId: "ASIATEMP", secretAccessKey: "secret/with+signs=",
                                         sessionToken: "FwoGZXIvYXdzE//token+with/slashes=")

    static let cases: [Case] = [
        Case(name: "GET with a range", request: SignableRequest(method: "GET", host: "127.0.0.1:8333", path: "/media/blobs/ab12",
                                                               headers: [("Range", "bytes=0-99")]),
             payload: SigV4Signer.emptyPayload, credentials: credentials),
        Case(name: "PUT of a key that needs encoding", request: SignableRequest(
                method: "PUT", host: "s3.eu-west-3.amazonaws.com", path: "/media/uploads/a b+c=d/é~ü&x.jpg",
                headers: [("Content-Length", "5"), ("Content-Type", "image/jpeg"), ("x-amz-meta-note", "  two   spaces ")]),
             payload: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", credentials: credentials, region: "eu-west-3"),
        Case(name: "a listing's query", request: SignableRequest(
                method: "GET", host: "127.0.0.1:8333", path: "/media",
                query: [("list-type", "2"), ("prefix", "blobs/a b"), ("continuation-token", "x+y/z="), ("delimiter", "")]),
             payload: SigV4Signer.emptyPayload, credentials: credentials),
        Case(name: "multipart part, unsigned payload, temporary credentials", request: SignableRequest(
                method: "PUT", host: "127.0.0.1:8333", path: "/media/uploads/u1",
                query: [("partNumber", "3"), ("uploadId", "VXBsb2FkIElE+/=")], headers: [("Content-Length", "5242880")]),
             payload: SigV4Signer.unsignedPayload, credentials: temporary),
        Case(name: "presigned GET", request: SignableRequest(method: "GET", host: "127.0.0.1:8333", path: "/media/blobs/ab 12"),
             payload: SigV4Signer.unsignedPayload, credentials: credentials, presignExpires: 900),
        Case(name: "presigned GET, temporary credentials", request: SignableRequest(
                method: "GET", host: "s3.amazonaws.com", path: "/media/blobs/ab12", query: [("response-content-type", "image/jpeg")]),
             payload: SigV4Signer.unsignedPayload, credentials: temporary, presignExpires: 604_800),
    ]

    /// botocore signs each case; prints the Authorization header, or the presigned URL's query.
    static let oracle = #"""
    import datetime, json, sys
    from unittest import mock
    from urllib.parse import quote, urlsplit, parse_qsl
    from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    answers = []
    for case in json.load(sys.stdin):
        credentials = Credentials(case["key"], case["secret"], case["token"])
        scheme = "https" if "amazonaws" in case["host"] else "http"
        url = scheme + "://" + case["host"] + quote(case["path"], safe="/~")
        request = AWSRequest(method=case["method"], url=url, headers=dict(case["headers"]), params=case["query"])
        now = datetime.datetime.fromtimestamp(case["time"], datetime.timezone.utc)
        with mock.patch("botocore.auth.get_current_datetime", return_value=now):
            if case["expires"] is None:
                signer = S3SigV4Auth(credentials, "s3", case["region"])
                signer.payload = lambda _request: case["payload"]
                signer.add_auth(request)
                answers.append(request.headers["Authorization"])
            else:
                S3SigV4QueryAuth(credentials, "s3", case["region"], expires=case["expires"]).add_auth(request)
                answers.append(json.dumps(dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True)), sort_keys=True))
    print(json.dumps(answers))
    """#

    @Test("header signatures and presigned URLs: byte for byte what botocore makes")
    func agreesWithBotocore() async throws {
        let input = Self.cases.map { item -> [String: Any] in
            [
                "method": item.request.method, "host": item.request.host, "path": item.request.path,
                "query": item.request.query.map { [$0.name, $0.value] }, "headers": item.request.headers.map { [$0.name, $0.value] },
                "payload": item.payload, "key": item.credentials.accessKeyId, "secret": item.credentials.secretAccessKey,
                "token": item.credentials.sessionToken as Any, "region": item.region, "time": Self.moment.timeIntervalSince1970,
                "expires": item.presignExpires as Any,
            ]
        }
        let output = try await Tool.run("python3", ["-c", Self.oracle], input: try JSONSerialization.data(withJSONObject: input))
        try #require(output.status == 0, "botocore: \(output.stderr)")
        let expected = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String])
        try #require(expected.count == Self.cases.count)
        for (item, oracle) in zip(Self.cases, expected) {
            let signer = SigV4Signer(credentials: item.credentials, region: item.region)
            if let expires = item.presignExpires {
                let query = signer.presignedQuery(item.request, expires: expires, date: Self.moment)
                var ours: [String: String] = [:]
                for pair in URLComponents(string: "http://x/?" + query)!.queryItems! { ours[pair.name] = pair.value ?? "" }
                let theirs = try #require(try JSONSerialization.jsonObject(with: Data(oracle.utf8)) as? [String: String])
                #expect(ours == theirs, "\(item.name)")
            } else {
                let headers = signer.sign(item.request, payloadSHA256: item.payload, date: Self.moment)
                #expect(headers.first { $0.name == "authorization" }?.value == oracle, "\(item.name)")
            }
        }
    }

    @Test("timestamps and encoding: the specification's own examples")
    func encoding() {
        #expect(SigV4Signer.timestamp(Self.moment) == "20261203T234444Z")
        #expect(SigV4Signer.uriEncode("a b/c~d_e.f-g*h", keepingSlash: true) == "a%20b/c~d_e.f-g%2Ah")
        #expect(SigV4Signer.uriEncode("a/b") == "a%2Fb")
        #expect(SigV4Signer.uriEncode("é") == "%C3%A9")
    }

    @Test("blob store URLs: bucket, endpoint, region, prefix; bad ones refused with a reason")
    func locations() throws {
        let location = try S3Location(url: "s3://media?endpoint=http://127.0.0.1:8333&region=eu-west-3&prefix=node", environment: [:])
        #expect(location == S3Location(bucket: "media", scheme: "http", host: "127.0.0.1", port: 8333, region: "eu-west-3", keyPrefix: "node/"))
        #expect(location.hostHeader == "127.0.0.1:8333")
        let aws = try S3Location(url: "s3://media", environment: ["AWS_REGION": "eu-central-1"])
        #expect(aws.origin == "https://s3.eu-central-1.amazonaws.com")
        for bad in ["http://media", "s3://", "s3://Media_Bad", "s3://media?endpoint=ftp://x", "s3://media?endpoint=http://h/path"] {
            #expect(throws: S3Location.Invalid.self, "\(bad)") { try S3Location(url: bad, environment: [:]) }
        }
    }
}
