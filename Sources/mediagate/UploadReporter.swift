import Foundation

/// What `mediagate upload` tells the user as files move.
///
/// On a terminal: a line per finished file, and below them a progress bar per active file and
/// one for the whole batch (bytes, rate, ETA), redrawn in place at most ten times a second.
/// Otherwise (or with `--json`): one JSON object per line and event, `progress` at most once a
/// second per file. Called from the upload threads; everything is behind one lock.
final class UploadReporter: @unchecked Sendable {
    enum Style { case terminal, jsonLines }

    private struct Active {
        var name: String
        var bytes = 0
        var total: Int
        var startBytes: Int?
        let started = ContinuousClock.now
        var lastReport = ContinuousClock.now
    }

    let style: Style
    private let lock = NSLock()
    private var active: [String: Active] = [:]
    private var order: [String] = []
    private var batchTotal = 0
    private var finishedBytes = 0
    private var movedBytes = 0
    private let started = ContinuousClock.now
    private var drawnLines = 0
    private var lastDraw = ContinuousClock.now - .seconds(1)

    init(style: Style, totalBytes: Int) {
        self.style = style
        self.batchTotal = totalBytes
    }

    func started(_ file: String, size: Int, mimeType: String?, warning: String?) {
        lock.withLock {
            active[file] = Active(name: (file as NSString).lastPathComponent, total: size)
            order.append(file)
            switch style {
            case .jsonLines:
                emit(["event": "started", "file": file, "size": size, "mime_type": mimeType, "warning": warning])
            case .terminal:
                if let warning { printAbove("! \((file as NSString).lastPathComponent): \(warning)") }
                redraw(force: false)
            }
        }
    }

    func progress(_ file: String, bytes: Int, total: Int) {
        lock.withLock {
            guard var entry = active[file] else { return }
            if entry.startBytes == nil { entry.startBytes = bytes } // resumed uploads start part-way
            movedBytes += max(0, bytes - entry.bytes)
            entry.bytes = bytes
            entry.total = total
            let now = ContinuousClock.now
            switch style {
            case .jsonLines:
                if now - entry.lastReport >= .seconds(1) {
                    entry.lastReport = now
                    emit(["event": "progress", "file": file, "bytes": bytes, "total": total,
                          "bytes_per_second": Int(rate(entry, now: now))])
                }
                active[file] = entry
            case .terminal:
                active[file] = entry
                redraw(force: false)
            }
        }
    }

    func done(_ file: String, size: Int, fileId: String, messageId: Int?, attachment: [String: Any], skipped: Bool) {
        lock.withLock {
            _ = finish(file)
            if skipped { batchTotal -= size } else { finishedBytes += size }
            switch style {
            case .jsonLines:
                emit(["event": skipped ? "skipped" : "done", "file": file, "file_id": fileId,
                      "message_id": messageId, "attachment": attachment])
            case .terminal:
                let name = (file as NSString).lastPathComponent
                printAbove(skipped ? "= \(name) (already posted)" : "✓ \(name)  \(Self.bytes(size))")
            }
        }
    }

    func failed(_ file: String, error: String, code: String?) {
        lock.withLock {
            let entry = finish(file)
            batchTotal -= entry?.total ?? 0
            switch style {
            case .jsonLines: emit(["event": "failed", "file": file, "error": error, "code": code])
            case .terminal: printAbove("✗ \((file as NSString).lastPathComponent): \(error)")
            }
        }
    }

    func summary(files: Int, uploaded: Int, skipped: Int, failed: Int) {
        lock.withLock {
            let seconds = (ContinuousClock.now - started).seconds
            switch style {
            case .jsonLines:
                emit(["event": "summary", "files": files, "uploaded": uploaded, "skipped": skipped, "failed": failed,
                      "bytes_sent": movedBytes, "seconds": (seconds * 1000).rounded() / 1000])
            case .terminal:
                clear()
                let rate = seconds > 0 ? Double(movedBytes) / seconds : 0
                write("\(uploaded) uploaded, \(skipped) already there, \(failed) failed of \(files) files; "
                      + "\(Self.bytes(movedBytes)) sent in \(String(format: "%.1f", seconds)) s (\(Self.bytes(Int(rate)))/s)\n")
            }
        }
    }

    // MARK: Drawing (called with the lock held)

    private func finish(_ file: String) -> Active? {
        order.removeAll { $0 == file }
        return active.removeValue(forKey: file)
    }

    private func rate(_ entry: Active, now: ContinuousClock.Instant) -> Double {
        let elapsed = (now - entry.started).seconds
        return elapsed > 0 ? Double(entry.bytes - (entry.startBytes ?? 0)) / elapsed : 0
    }

    private func printAbove(_ line: String) {
        clear()
        write(line + "\n")
        redraw(force: true)
    }

    private func clear() {
        guard drawnLines > 0 else { return }
        write("\u{1B}[\(drawnLines)A\u{1B}[J")
        drawnLines = 0
    }

    private func redraw(force: Bool) {
        let now = ContinuousClock.now
        guard force || now - lastDraw >= .milliseconds(100) else { return }
        lastDraw = now
        clear()
        var lines = order.compactMap { active[$0] }.map { entry in
            Self.bar(label: entry.name, done: entry.bytes, total: entry.total, rate: rate(entry, now: now))
        }
        let done = finishedBytes + active.values.reduce(0) { $0 + $1.bytes }
        let elapsed = (now - started).seconds
        lines.append(Self.bar(label: "total", done: done, total: max(batchTotal, done),
                              rate: elapsed > 0 ? Double(movedBytes) / elapsed : 0))
        write(lines.joined(separator: "\n") + "\n")
        drawnLines = lines.count
    }

    private static func bar(label: String, done: Int, total: Int, rate: Double) -> String {
        let width = 24
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let filled = Int(fraction * Double(width))
        let name = label.count > 28 ? String(label.prefix(27)) + "…" : label.padding(toLength: 28, withPad: " ", startingAt: 0)
        let eta = rate > 0 ? String(format: "%4.0fs", Double(total - done) / rate) : "   ?s"
        return "\(name) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] "
            + String(format: "%3.0f%%", fraction * 100) + " \(bytes(done))/\(bytes(total)) \(bytes(Int(rate)))/s ETA \(eta)"
    }

    static func bytes(_ count: Int) -> String { ByteCountText.format(count, binary: true) }

    /// One JSON line; absent (nil) fields are left out.
    private func emit(_ object: [String: Any?]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object.compactMapValues { $0 }, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        write(String(decoding: data, as: UTF8.self) + "\n")
    }

    private func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
