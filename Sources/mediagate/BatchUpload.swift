import Foundation
import MediaPipeline
import MediagateClient
import NIOPosix

/// One `mediagate upload` run's shared parts, and the steps each file goes through:
/// identify → (skip if posted) → probe locally → tus upload → wait for the server's attachment →
/// post the message. Every step's result goes into the state file as soon as it is known.
struct BatchUpload: Sendable {
    enum Outcome: Hashable, Sendable { case uploaded, skipped, failed, loginRequired }

    let auth: SessionAuth
    let room: Int
    let state: UploadStateFile
    let reporter: UploadReporter
    let processor: MediaProcessor
    /// The threads libcurl's blocking calls run on; one per file in flight.
    let threads: NIOThreadPool
    /// `--concurrency`: files sending bytes at once. Waiting for the server's attachment and
    /// posting happen outside a slot, so the next file's bytes flow meanwhile.
    let uploadSlots: AsyncSemaphore
    let maxSize: Int?
    let forbidden: Set<String>
    /// Re-encoding asked for on the command line (none by default: files go up byte for byte).
    let preparation: ImagePreparation
    let options: ResumableUpload.Options
    let stallTimeout: Duration
    /// Set once the login is gone: the files not yet started are not tried.
    let loginLost = CancellationFlag()

    func upload(_ file: String) async -> Outcome {
        guard !loginLost.isSet else {
            reporter.failed(file, error: "not tried: the login must be renewed", code: "login_required")
            return .loginRequired
        }
        do {
            return try await transfer(file)
        } catch let error as ClientError {
            if case .loginRequired = error {
                loginLost.set()
                reporter.failed(file, error: error.description, code: "login_required")
                return .loginRequired
            }
            var code: String?
            if case .http(_, let serverCode, _) = error { code = serverCode }
            reporter.failed(file, error: error.description, code: code)
        } catch let failure as UploadFailure {
            reporter.failed(file, error: failure.description, code: failure.code)
        } catch {
            reporter.failed(file, error: "\(error)", code: nil)
        }
        return .failed
    }

    private func transfer(_ file: String) async throws -> Outcome {
        let identity = try await threads.runIfActive { try FileIdentity(path: file) }
        let key = identity.key(server: auth.server, room: room)
        let known = state[key]
        if let known, let fileId = known.fileId, let messageId = known.messageId {
            reporter.done(file, size: identity.size, fileId: fileId, messageId: messageId, attachment: [:], skipped: true)
            return .skipped
        }

        // Refuse here what the server would refuse, before a byte is sent.
        guard identity.size > 0 else { throw UploadFailure("the file is empty", code: "empty") }
        if let maxSize, identity.size > maxSize {
            throw UploadFailure("\(UploadReporter.bytes(identity.size)) is over the server's limit of \(UploadReporter.bytes(maxSize))", code: "too_large")
        }
        // Headers only: the server decodes, hashes and thumbnails the file itself.
        let report = try await processor.probe(fileAt: identity.path, depth: .headers)
        let mimeType = report.attachment.mimeType ?? "application/octet-stream"
        if forbidden.contains(mimeType) {
            throw UploadFailure("the server refuses files of type \(mimeType)", code: "forbidden_type")
        }
        // Re-encoded images are kept beside the state file until posted, so a resumed upload
        // sends the very bytes the interrupted one started with.
        var source = identity.path, name = report.attachment.filename, type = mimeType, size = identity.size
        var prepared: String?
        if let plan = preparation.plan(for: report.attachment) {
            if report.error != nil {
                throw UploadFailure("cannot re-encode it as asked: \(report.error!)", code: "prepare_failed")
            }
            let output = state.preparedPath(key: key, suffix: plan.suffix)
            if !FileManager.default.fileExists(atPath: output) {
                // The suffix names the format for libvips, so it stays last.
                let partial = (output as NSString).deletingPathExtension + ".part." + plan.suffix
                do {
                    _ = try await processor.prepareImage(fileAt: identity.path, attachment: report.attachment,
                                                         preparation: preparation, to: partial)
                } catch {
                    unlink(partial)
                    throw UploadFailure("cannot re-encode it as asked: \(error)", code: "prepare_failed")
                }
                rename(partial, output)
            }
            (source, name, type, prepared) = (output, plan.filename, plan.mimeType, output)
            size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        }
        reporter.started(file, size: size, mimeType: type, warning: report.error.map { "\($0)" })

        let metadata = ["filename": name, "filetype": type, "room_id": String(room)]
        // The same file posted to the same room on a rerun is the same message.
        let clientId = "mediagate-upload-" + key.prefix(32)
        let (auth, room, state, reporter, options, stallTimeout) = (auth, room, state, reporter, options, stallTimeout)
        let (upload, text) = (source, name)
        var fileId = known?.fileId
        if fileId == nil {
            await uploadSlots.acquire()
            let url: String
            do {
                url = try await threads.runIfActive {
                    let connection = APIConnection(server: auth.server, auth: auth)
                    connection.transport.stallTimeout = stallTimeout
                    return try ResumableUpload(client: TusClient(connection: connection), options: options).upload(
                        path: upload, metadata: metadata, resuming: known?.uploadURL,
                        created: { url in try state.update(key, path: identity.path) { $0.uploadURL = url } },
                        progress: { reporter.progress(file, bytes: $0.bytes, total: $0.total) })
                }
                await uploadSlots.release()
            } catch {
                await uploadSlots.release()
                throw error
            }
            fileId = try await threads.runIfActive {
                let stored = try ChatClient(connection: APIConnection(server: auth.server, auth: auth))
                    .completedFile(uploadURL: url, retry: options.retry)
                try state.update(key, path: identity.path) { $0.fileId = stored.id }
                return stored.id
            }
        }
        let storedId = fileId!
        let posted = try await threads.runIfActive { () -> Posted in
            let chat = ChatClient(connection: APIConnection(server: auth.server, auth: auth))
            let message = try chat.post(file: StoredFile(id: storedId, attachment: [:]), room: room, text: text,
                                        clientId: clientId, retry: options.retry)
            let messageId = message["id"] as? Int
            try state.update(key, path: identity.path) { $0.messageId = messageId }
            return Posted(fileId: storedId, messageId: messageId, attachment: message["attachment"] as? [String: Any] ?? [:])
        }
        if let prepared { unlink(prepared) }
        reporter.done(file, size: size, fileId: posted.fileId, messageId: posted.messageId, attachment: posted.attachment, skipped: false)
        return .uploaded
    }

    private struct Posted: @unchecked Sendable {
        var fileId: String
        var messageId: Int?
        var attachment: [String: Any]
    }
}
