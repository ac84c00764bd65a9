import Foundation
import MediaPipeline
import MediagateClient
import MediagateWire
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
    /// How the bytes go: tus, or the IETF draft at an interop version.
    let wire: Wire
    let stallTimeout: Duration

    enum Wire: Sendable {
        case tus
        case ietf(ResumableDraft.InteropVersion)
    }
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
            if case .localFile = error { code = "unreadable" }
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
        let payload = try await payload(for: identity, key: key)
        reporter.started(file, size: payload.size, mimeType: payload.mimeType, warning: payload.warning)

        var fileId = known?.fileId
        if fileId == nil {
            let url = try await sendBytes(of: payload, file: file, key: key, path: identity.path, resuming: known?.uploadURL)
            fileId = try await storedFile(uploadURL: url, key: key, path: identity.path)
        }
        let posted = try await post(fileId: fileId!, text: payload.filename, key: key, path: identity.path)
        if payload.isPrepared { unlink(payload.path) }
        reporter.done(file, size: payload.size, fileId: posted.fileId, messageId: posted.messageId,
                      attachment: posted.attachment, skipped: false)
        return .uploaded
    }

    /// What goes up for a file: the file itself, or its re-encoded copy.
    private struct Payload: Sendable {
        var path: String
        var filename: String
        var mimeType: String
        var size: Int
        var isPrepared: Bool
        var warning: String?
    }

    /// Probes the file (headers only: the server decodes, hashes and thumbnails it itself),
    /// refuses what the server would refuse, and re-encodes it when asked to.
    private func payload(for identity: FileIdentity, key: String) async throws -> Payload {
        guard identity.size > 0 else { throw UploadFailure("the file is empty", code: "empty") }
        if let maxSize, identity.size > maxSize {
            throw UploadFailure("\(UploadReporter.bytes(identity.size)) is over the server's limit of \(UploadReporter.bytes(maxSize))", code: "too_large")
        }
        let report = try await processor.probe(fileAt: identity.path, depth: .headers)
        let mimeType = report.attachment.mimeType ?? "application/octet-stream"
        if forbidden.contains(mimeType) {
            throw UploadFailure("the server refuses files of type \(mimeType)", code: "forbidden_type")
        }
        let warning = report.error.map { "\($0)" }
        guard let plan = preparation.plan(for: report.attachment) else {
            return Payload(path: identity.path, filename: report.attachment.filename, mimeType: mimeType,
                           size: identity.size, isPrepared: false, warning: warning)
        }
        if let error = report.error { throw UploadFailure("cannot re-encode it as asked: \(error)", code: "prepare_failed") }
        // Kept beside the state file until posted, so a resumed upload sends the very bytes the
        // interrupted one started with.
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
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        return Payload(path: output, filename: plan.filename, mimeType: plan.mimeType, size: size, isPrepared: true, warning: warning)
    }

    /// The tus upload, holding one of the `--concurrency` slots; returns the upload's URL.
    private func sendBytes(of payload: Payload, file: String, key: String, path: String, resuming: String?) async throws -> String {
        let (auth, state, reporter, options, stallTimeout) = (auth, state, reporter, options, stallTimeout)
        let metadata = ["filename": payload.filename, "filetype": payload.mimeType, "room_id": String(room)]
        await uploadSlots.acquire()
        do {
            let url = try await threads.runIfActive {
                let connection = APIConnection(server: auth.server, auth: auth)
                connection.transport.stallTimeout = stallTimeout
                switch wire {
                case .tus:
                    return try ResumableUpload(client: TusClient(connection: connection), options: options).upload(
                        path: payload.path, metadata: metadata, resuming: resuming,
                        created: { url in try state.update(key, path: path) { $0.uploadURL = url } },
                        progress: { reporter.progress(file, bytes: $0.bytes, total: $0.total) })
                case .ietf(let version):
                    // The URL is kept as soon as the server's 104 names it: a rerun after a kill resumes it.
                    return try DraftUpload(connection: connection, options: .init(version: version, retry: options.retry)).upload(
                        path: payload.path, filename: payload.filename, mimeType: payload.mimeType, resuming: resuming,
                        created: { url in try? state.update(key, path: path) { $0.uploadURL = url } },
                        progress: { reporter.progress(file, bytes: $0.bytes, total: $0.total) })
                }
            }
            await uploadSlots.release()
            return url
        } catch {
            await uploadSlots.release()
            throw error
        }
    }

    /// Waits for the server's pipeline to turn the upload into a stored file; returns its id.
    private func storedFile(uploadURL: String, key: String, path: String) async throws -> String {
        let (auth, state, retry) = (auth, state, options.retry)
        return try await threads.runIfActive {
            let stored = try ChatClient(connection: APIConnection(server: auth.server, auth: auth))
                .completedFile(uploadURL: uploadURL, retry: retry)
            try state.update(key, path: path) { $0.fileId = stored.id }
            return stored.id
        }
    }

    /// Posts the file into the room. The `client_id` comes from the file's identity and
    /// destination, so a rerun (even without its state file) gets the same message back.
    private func post(fileId: String, text: String, key: String, path: String) async throws -> Posted {
        let (auth, state, room, retry) = (auth, state, room, options.retry)
        let clientId = "mediagate-upload-" + key.prefix(32)
        return try await threads.runIfActive {
            let message = try ChatClient(connection: APIConnection(server: auth.server, auth: auth))
                .post(file: StoredFile(id: fileId, attachment: [:]), room: room, text: text, clientId: clientId, retry: retry)
            let messageId = message["id"] as? Int
            try state.update(key, path: path) { $0.messageId = messageId }
            return Posted(fileId: fileId, messageId: messageId, attachment: message["attachment"] as? [String: Any] ?? [:])
        }
    }

    private struct Posted: @unchecked Sendable {
        var fileId: String
        var messageId: Int?
        var attachment: [String: Any]
    }
}
