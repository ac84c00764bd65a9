import Foundation
import MediaPipeline
import MediagateWire

/// One JSON line of `mediagate probe --json`.
struct ProbeLine: Encodable {
    struct ProbeError: Encodable {
        var code: String
        var message: String
    }

    var path: String
    var attachment: Attachment?
    var thumbnail: String?
    var error: ProbeError?

    private enum CodingKeys: String, CodingKey { case path, attachment, thumbnail, error }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(path, forKey: .path)
        try container.encode(attachment, forKey: .attachment)
        try container.encode(thumbnail, forKey: .thumbnail)
        try container.encode(error, forKey: .error)
    }
}

/// Writes probe results as a table for people or JSON lines for scripts.
struct ProbePrinter {
    let json: Bool
    private let encoder: JSONEncoder
    private var headerPrinted = false

    init(json: Bool) {
        self.json = json
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    }

    mutating func print(path: String, report: MediaReport, thumbnail: String?) {
        let error = report.error.map { ProbeLine.ProbeError(code: $0.code.description, message: $0.message) }
        if json {
            emit(ProbeLine(path: path, attachment: report.attachment, thumbnail: thumbnail, error: error))
        } else {
            row(path: path, attachment: report.attachment, note: report.error.map { "\($0.code): \($0.message)" })
        }
    }

    mutating func print(path: String, failure: any Error) {
        let (code, message) = (failure as? MediaError).map { ($0.code.description, $0.message) } ?? ("io", "\(failure)")
        if json {
            emit(ProbeLine(path: path, error: .init(code: code, message: message)))
        } else {
            row(path: path, attachment: nil, note: "\(code): \(message)")
        }
    }

    func finish(files: Int, failures: Int) {
        guard !json else { return }
        let summary = failures == 0 ? "\(files) files analysed" : "\(files) files, \(failures) with errors"
        FileHandle.standardError.write(Data((summary + "\n").utf8))
    }

    private func emit(_ line: ProbeLine) {
        guard var data = try? encoder.encode(line) else { return }
        data.append(0x0A)
        FileHandle.standardOutput.write(data)
    }

    private mutating func row(path: String, attachment: Attachment?, note: String?) {
        if !headerPrinted {
            headerPrinted = true
            write(columns: ["TYPE", "MIME", "SIZE", "DISPLAY", "DURATION", "FILE"])
        }
        let dimensions = attachment.flatMap { a in a.width.map { "\($0)x\(a.height ?? 0)" } } ?? "-"
        let duration = attachment?.duration.map { String(format: "%.2fs", $0) } ?? "-"
        var columns = [
            attachment?.type.rawValue ?? "-", Self.fitted(attachment?.mimeType ?? "-", to: Self.widths[1] - 1),
            attachment?.size.map { ByteCountText.format($0, binary: false) } ?? "-", dimensions, duration, path,
        ]
        if let note { columns[5] += "  (\(note))" }
        write(columns: columns)
    }

    /// Column widths, the last column (the path) excepted.
    static let widths = [9, 28, 9, 11, 9]

    /// `text` shortened to `width` characters with an ellipsis (office documents' MIME types run
    /// to 73 characters and pushed every later column out of line).
    static func fitted(_ text: String, to width: Int) -> String {
        text.count <= width ? text : String(text.prefix(width - 1)) + "…"
    }

    private func write(columns: [String]) {
        var line = ""
        for (index, column) in columns.enumerated() {
            line += index < Self.widths.count
                ? column.padding(toLength: max(Self.widths[index], column.count + 1), withPad: " ", startingAt: 0) : column
        }
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
