import Foundation

/// The few values the gateway reads from S3's XML answers (an error's `Code`, a listing's
/// keys), found by element name. S3's answers are flat and machine-written, so this is
/// enough, and it spares the server a dependency on libxml2 (FoundationXML).
enum XMLText {
    /// The text of the first `<name>` element in `xml`, entities decoded.
    static func first(_ name: String, in xml: Substring) -> String? {
        all(name, in: xml).first
    }

    static func first(_ name: String, in xml: String) -> String? { first(name, in: xml[...]) }

    /// The contents of every `<name>…</name>` element in `xml`, in order (not nested in itself).
    static func all(_ name: String, in xml: Substring) -> [String] {
        elements(name, in: xml).map { decode($0) }
    }

    /// The raw contents of every `<name>…</name>` element, for reading the elements inside.
    static func elements(_ name: String, in xml: Substring) -> [Substring] {
        var found: [Substring] = []
        var rest = xml
        let open = "<\(name)>", close = "</\(name)>"
        while let start = rest.range(of: open), let end = rest.range(of: close, range: start.upperBound..<rest.endIndex) {
            found.append(rest[start.upperBound..<end.lowerBound])
            rest = rest[end.upperBound...]
        }
        return found
    }

    /// Text made safe inside an element.
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// XML's five predefined entities and numeric character references.
    static func decode(_ text: Substring) -> String {
        guard text.contains("&") else { return String(text) }
        var decoded = ""
        var rest = text
        while let amp = rest.firstIndex(of: "&") {
            decoded += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";") else { break }
            let entity = rest[rest.index(after: amp)..<semicolon]
            switch entity {
            case "amp": decoded += "&"
            case "lt": decoded += "<"
            case "gt": decoded += ">"
            case "quot": decoded += "\""
            case "apos": decoded += "'"
            default:
                let number = entity.hasPrefix("#x") ? UInt32(entity.dropFirst(2), radix: 16)
                    : entity.hasPrefix("#") ? UInt32(entity.dropFirst()) : nil
                if let number, let scalar = Unicode.Scalar(number) { decoded.unicodeScalars.append(scalar) } else { decoded += "&\(entity);" }
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        return decoded + rest
    }
}

/// One page of a ListObjectsV2 answer.
struct ListBucketResult {
    var objects: [(key: String, size: Int64, lastModified: Date?)] = []
    var nextContinuationToken: String?

    init(xml: String) {
        for contents in XMLText.elements("Contents", in: xml[...]) {
            guard let key = XMLText.first("Key", in: contents) else { continue }
            let size = XMLText.first("Size", in: contents).flatMap { Int64($0) } ?? 0
            let modified = XMLText.first("LastModified", in: contents).flatMap(Self.isoDate)
            objects.append((key, size, modified))
        }
        if XMLText.first("IsTruncated", in: xml) == "true" {
            nextContinuationToken = XMLText.first("NextContinuationToken", in: xml)
        }
    }

    /// `2026-12-03T23:44:44.000Z`, with or without the fraction.
    static func isoDate(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }
}
