import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import _NIOFileSystem

/// One part of a multipart upload, as S3 lists it.
package struct S3Part: Sendable, Equatable {
    package var number: Int
    package var etag: String
    package var size: Int64
}

/// S3's multipart upload: an object assembled from parts sent one by one (every part but the
/// last at least 5 MiB), from any node, each part kept by S3 until the upload is completed or
/// aborted. This is what lets an upload in progress live in the bucket instead of on a node.
extension S3Client {
    /// Starts a multipart upload of `key`; returns its upload id.
    package func createMultipartUpload(_ key: String) async throws -> String {
        try await retrying("CreateMultipartUpload \(key)") {
            let response = try await execute("POST", key: key, query: [("uploads", "")], body: nil,
                                             payloadSHA256: SigV4Signer.emptyPayload, headers: [])
            try await checkStatus(response, operation: "CreateMultipartUpload \(key)")
            let text = try await Self.text(of: response, limit: 1 << 20)
            guard let id = XMLText.first("UploadId", in: text), !id.isEmpty else {
                throw S3Error(status: Int(response.status.code), code: "NoUploadId", message: String(text.prefix(200)),
                              operation: "CreateMultipartUpload \(key)")
            }
            return id
        }
    }

    /// Sends bytes `range` of the file at `path` as part `number` (1–10,000); returns its ETag.
    /// Sending a part number again replaces that part. `sha256` is the part's hash when known.
    package func uploadPart(_ key: String, uploadId: String, number: Int, fileAt path: String, range: Range<Int64>,
                            sha256: String? = nil) async throws -> String {
        let operation = "UploadPart \(key) #\(number)"
        return try await retrying(operation) {
            try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { handle in
                let length = range.upperBound - range.lowerBound
                let body = HTTPClientRequest.Body.stream(handle.readChunks(in: range, chunkLength: .mebibytes(1)), length: .known(length))
                let response = try await execute("PUT", key: key, query: [("partNumber", String(number)), ("uploadId", uploadId)],
                                                 body: body, payloadSHA256: sha256 ?? SigV4Signer.unsignedPayload,
                                                 headers: [("content-length", String(length))])
                try await check(response, operation: operation)
                guard let etag = response.headers.first(name: "etag") else {
                    throw S3Error(status: Int(response.status.code), code: "NoETag", message: "", operation: operation)
                }
                return etag
            }
        }
    }

    /// The parts S3 holds for the upload, in order (every page of ListParts).
    package func listParts(_ key: String, uploadId: String) async throws -> [S3Part] {
        var parts: [S3Part] = []
        var marker: String?
        repeat {
            var query: [(name: String, value: String)] = [("uploadId", uploadId)]
            if let marker { query.append(("part-number-marker", marker)) }
            let response = try await send("GET", key: key, operation: "ListParts \(key)", query: query, allowing: [], drainOnSuccess: false)
            let text = try await Self.text(of: response, limit: 16 << 20)
            for part in XMLText.elements("Part", in: text[...]) {
                guard let number = XMLText.first("PartNumber", in: part).flatMap({ Int($0) }),
                      let etag = XMLText.first("ETag", in: part) else { continue }
                parts.append(S3Part(number: number, etag: etag, size: XMLText.first("Size", in: part).flatMap { Int64($0) } ?? 0))
            }
            marker = XMLText.first("IsTruncated", in: text) == "true" ? XMLText.first("NextPartNumberMarker", in: text) : nil
        } while marker != nil
        // One entry per number, the last listed: SeaweedFS 4.48 lists a part sent twice twice
        // (AWS lists the latest once), and a completion names each part once.
        var byNumber: [Int: S3Part] = [:]
        for part in parts { byNumber[part.number] = part }
        return byNumber.values.sorted { $0.number < $1.number }
    }

    /// Assembles the object from `parts`. S3 may answer 200 and still fail (an `<Error>` in
    /// the body, sent after a long assembly): that is an error here too.
    package func completeMultipartUpload(_ key: String, uploadId: String, parts: [S3Part]) async throws {
        let operation = "CompleteMultipartUpload \(key)"
        var xml = "<CompleteMultipartUpload>"
        for part in parts {
            xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(XMLText.escape(part.etag))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let body = ByteBuffer(string: xml)
        let hash = SigV4Signer.hex(SHA256.hash(data: body.readableBytesView))
        try await retrying(operation) {
            let response = try await execute("POST", key: key, query: [("uploadId", uploadId)], body: .bytes(body), payloadSHA256: hash,
                                             headers: [("content-length", String(body.readableBytes)), ("content-type", "application/xml")])
            try await checkStatus(response, operation: operation)
            let text = try await Self.text(of: response, limit: 1 << 20)
            if text.contains("<Error>") {
                throw S3Error(status: 200, code: XMLText.first("Code", in: text) ?? "InternalError",
                              message: XMLText.first("Message", in: text) ?? "", operation: operation)
            }
        }
    }

    /// Drops the upload and every part it holds (the sweeper's job for expired uploads).
    package func abortMultipartUpload(_ key: String, uploadId: String) async throws {
        _ = try await send("DELETE", key: key, operation: "AbortMultipartUpload \(key)", query: [("uploadId", uploadId)], allowing: [404])
    }
}
