import CCurl
import CCurlShim
import Foundation

/// One HTTP exchange's answer: status, headers (names lower-cased) and a bounded body.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data

    public subscript(_ name: String) -> String? { headers[name.lowercased()] }

    /// The body as a JSON object, or empty when it is not one.
    public var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }
}

/// A failure below HTTP: the connection could not be made, broke, or stalled.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    public var code: Int
    public var message: String

    /// Worth trying again: everything except a malformed URL, an unsupported scheme, or our own abort.
    public var isRetryable: Bool {
        ![CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT, CURLE_ABORTED_BY_CALLBACK, CURLE_BAD_FUNCTION_ARGUMENT]
            .map { Int($0.rawValue) }.contains(code)
    }

    /// The transfer was stopped from the progress callback (cancellation).
    public var isAbort: Bool { code == Int(CURLE_ABORTED_BY_CALLBACK.rawValue) }

    public var description: String { message }
}

/// A libcurl easy handle, used for one request at a time by one thread.
///
/// Keeping the handle between requests keeps its connection alive, so a file's chunks go over one
/// TCP connection. `perform` blocks: callers run it on a thread pool of their own, never on
/// Swift's cooperative pool.
public final class HTTPTransport {
    /// How long to wait for a TCP connection.
    public var connectTimeout: Duration = .seconds(10)
    /// A transfer that moves no byte for this long is aborted (a stalled connection).
    public var stallTimeout: Duration = .seconds(30)
    /// Bodies larger than this are cut; tus and chat answers are small.
    public var maxResponseBytes = 4 << 20

    private let handle: UnsafeMutableRawPointer

    private static let globalInit: Void = { _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    public init() {
        Self.globalInit
        guard let handle = curl_easy_init() else { fatalError("curl_easy_init failed: out of memory") }
        self.handle = handle
    }

    deinit {
        curl_easy_cleanup(handle)
        empty.deallocate()
    }

    /// What a request carries.
    public enum Body {
        /// Bytes in memory that stay valid until the request returns; sent without a copy.
        case memory(UnsafeRawBufferPointer?)
        /// `count` bytes of an open file from `offset` on, read as they are sent (never held whole).
        case file(descriptor: Int32, offset: Int, count: Int)
    }

    /// Sends one request. `body` must stay valid until this returns; it is sent as it is.
    /// `progress` sees the bytes of `body` sent so far and may return false to abort.
    public func perform(
        method: String, url: String, headers: [(String, String)] = [],
        body: UnsafeRawBufferPointer? = nil,
        progress: ((Int) -> Bool)? = nil
    ) throws(TransportError) -> HTTPResponse {
        try perform(method: method, url: url, headers: headers, sending: .memory(body), progress: progress)
    }

    /// Sends one request with `sending` as its body. `interim` hears each informational
    /// response (1xx but 100) as it arrives, with its headers (names lower-cased), even when the
    /// exchange then fails: `104 Upload Resumption Supported` names the upload to resume.
    public func perform(
        method: String, url: String, headers: [(String, String)] = [], sending: Body,
        progress: ((Int) -> Bool)? = nil, interim: ((Int, [String: String]) -> Void)? = nil
    ) throws(TransportError) -> HTTPResponse {
        curl_easy_reset(handle)
        let exchange = Exchange(maxBody: maxResponseBytes, progress: progress, interim: interim)
        let context = Unmanaged.passUnretained(exchange).toOpaque()

        var list: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(list) }
        // No `Expect: 100-continue` round trip before each chunk; no form content type by default.
        var lines = headers.map { "\($0.0): \($0.1)" } + ["Expect:"]
        if !headers.contains(where: { $0.0.lowercased() == "content-type" }) { lines.append("Content-Type:") }
        for line in lines { list = curl_slist_append(list, line) }

        try check(mg_curl_set_pointer(handle, CURLOPT_URL, url))
        try check(mg_curl_set_pointer(handle, CURLOPT_HTTPHEADER, list))
        try check(mg_curl_set_long(handle, CURLOPT_NOSIGNAL, 1))
        try check(mg_curl_set_long(handle, CURLOPT_TCP_NODELAY, 1))
        try check(mg_curl_set_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(connectTimeout.milliseconds)))
        try check(mg_curl_set_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1))
        try check(mg_curl_set_long(handle, CURLOPT_LOW_SPEED_TIME, max(1, Int(stallTimeout.milliseconds / 1000))))
        try check(mg_curl_set_data_callback(handle, CURLOPT_WRITEFUNCTION, Exchange.receiveBody))
        try check(mg_curl_set_pointer(handle, CURLOPT_WRITEDATA, context))
        try check(mg_curl_set_data_callback(handle, CURLOPT_HEADERFUNCTION, Exchange.receiveHeader))
        try check(mg_curl_set_pointer(handle, CURLOPT_HEADERDATA, context))
        if progress != nil {
            try check(mg_curl_set_progress_callback(handle, Exchange.reportProgress))
            try check(mg_curl_set_pointer(handle, CURLOPT_XFERINFODATA, context))
        }

        switch (method, sending) {
        case ("GET", _): break
        case ("HEAD", _): try check(mg_curl_set_long(handle, CURLOPT_NOBODY, 1))
        case (_, .file(let descriptor, let offset, let count)):
            // libcurl asks for the body a buffer at a time; each is read from the file then.
            exchange.file = (descriptor, offset, count)
            try check(mg_curl_set_long(handle, CURLOPT_UPLOAD, 1))
            try check(mg_curl_set_offset(handle, CURLOPT_INFILESIZE_LARGE, count))
            try check(mg_curl_set_data_callback(handle, CURLOPT_READFUNCTION, Exchange.readFile))
            try check(mg_curl_set_pointer(handle, CURLOPT_READDATA, context))
            try check(mg_curl_set_pointer(handle, CURLOPT_CUSTOMREQUEST, method))
        case (_, .memory(let body)):
            // The body goes out from the caller's memory, without a copy.
            let bytes = body ?? UnsafeRawBufferPointer(start: empty, count: 0)
            try check(mg_curl_set_offset(handle, CURLOPT_POSTFIELDSIZE_LARGE, bytes.count))
            try check(mg_curl_set_pointer(handle, CURLOPT_POSTFIELDS, bytes.baseAddress ?? UnsafeRawPointer(empty)))
            if method != "POST" { try check(mg_curl_set_pointer(handle, CURLOPT_CUSTOMREQUEST, method)) }
        }

        let result = curl_easy_perform(handle)
        guard result == CURLE_OK else {
            let reason = String(cString: curl_easy_strerror(result))
            throw TransportError(code: Int(result.rawValue), message: "\(method) \(url): \(reason)")
        }
        var status = 0
        _ = mg_curl_get_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: exchange.headers, body: exchange.body)
    }

    private func check(_ code: CURLcode) throws(TransportError) {
        guard code == CURLE_OK else {
            throw TransportError(code: Int(code.rawValue), message: String(cString: curl_easy_strerror(code)))
        }
    }

    /// What an empty body points at: libcurl wants a pointer even for zero bytes.
    private let empty = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
}

/// What libcurl's callbacks fill in during one `perform`.
private final class Exchange {
    var headers: [String: String] = [:]
    var body = Data()
    let maxBody: Int
    let progress: ((Int) -> Bool)?
    let interim: ((Int, [String: String]) -> Void)?
    /// The status of the response whose head is being read.
    var status = 0
    /// The request body's file, where it starts, and how many bytes it has; with the bytes read so far.
    var file: (descriptor: Int32, offset: Int, count: Int)?
    var sent = 0

    init(maxBody: Int, progress: ((Int) -> Bool)?, interim: ((Int, [String: String]) -> Void)?) {
        self.maxBody = maxBody
        self.progress = progress
        self.interim = interim
    }

    static let readFile: mg_curl_data_callback = { buffer, size, count, context in
        let exchange = Unmanaged<Exchange>.fromOpaque(context!).takeUnretainedValue()
        guard let file = exchange.file, let buffer else { return 0 }
        let wanted = min(size * count, file.count - exchange.sent)
        guard wanted > 0 else { return 0 }
        while true {
            let got = pread(file.descriptor, buffer, wanted, off_t(file.offset + exchange.sent))
            if got < 0 && errno == EINTR { continue }
            // A file that shrank or cannot be read: the transfer is aborted, not sent short.
            guard got > 0 else { return size_t(CURL_READFUNC_ABORT) }
            exchange.sent += got
            return got
        }
    }

    static let receiveBody: mg_curl_data_callback = { data, size, count, context in
        let exchange = Unmanaged<Exchange>.fromOpaque(context!).takeUnretainedValue()
        let length = size * count
        if let data, exchange.body.count < exchange.maxBody {
            let kept = min(length, exchange.maxBody - exchange.body.count)
            data.withMemoryRebound(to: UInt8.self, capacity: kept) { exchange.body.append($0, count: kept) }
        }
        return length
    }

    static let receiveHeader: mg_curl_data_callback = { data, size, count, context in
        let exchange = Unmanaged<Exchange>.fromOpaque(context!).takeUnretainedValue()
        let length = size * count
        guard let data else { return length }
        let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
        if line.hasPrefix("HTTP/") {
            exchange.headers = [:] // a new response (after a 100 Continue, say) starts over
            exchange.status = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        } else if line == "\r\n" || line == "\n" {
            if (101..<200).contains(exchange.status) { exchange.interim?(exchange.status, exchange.headers) }
        } else if let colon = line.firstIndex(of: ":") {
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
            exchange.headers[name] = value
        }
        return length
    }

    static let reportProgress: mg_curl_progress_callback = { context, _, _, _, uploaded in
        let exchange = Unmanaged<Exchange>.fromOpaque(context!).takeUnretainedValue()
        return exchange.progress?(Int(uploaded)) == false ? 1 : 0
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
