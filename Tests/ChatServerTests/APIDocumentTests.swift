import ChatServer
import Foundation
import MediagateTestSupport
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

/// `Docs/openapi.yaml` and `Docs/API.md` describe exactly the routes the server has.
@Suite("API documents")
struct APIDocumentTests {
    static func serverRoutes() async throws -> Set<String> {
        let services = try await ChatServices(configuration: try testConfiguration())
        return Set(ChatRouters(services: services).routeList)
    }

    /// `METHOD /path` for every operation under `paths:` in the OpenAPI file. The file keeps
    /// the usual layout: paths at two spaces, methods at four.
    static func openAPIRoutes() throws -> Set<String> {
        let text = try String(contentsOf: Fixtures.packageRoot.appendingPathComponent("Docs/openapi.yaml"), encoding: .utf8)
        var routes = Set<String>()
        var inPaths = false
        var currentPath: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("paths:") { inPaths = true; continue }
            if inPaths, let first = line.first, first != " " { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                currentPath = String(line.dropFirst(2).dropLast())
            } else if let path = currentPath, line.hasPrefix("    "), !line.hasPrefix("     ") {
                let key = line.trimmingCharacters(in: .whitespaces).dropLast()
                if ["get", "post", "put", "patch", "delete", "head", "options"].contains(String(key)) {
                    routes.insert("\(key.uppercased()) \(path)")
                }
            }
        }
        return routes
    }

    @Test("every server route is in openapi.yaml, and nothing else")
    func openAPIAgrees() async throws {
        let server = try await Self.serverRoutes()
        let documented = try Self.openAPIRoutes()
        #expect(!documented.isEmpty)
        #expect(server.subtracting(documented).isEmpty, "undocumented: \(server.subtracting(documented).sorted())")
        #expect(documented.subtracting(server).isEmpty, "documented but missing: \(documented.subtracting(server).sorted())")
    }

    @Test("every server route is named in API.md")
    func apiMarkdownAgrees() async throws {
        let text = try String(contentsOf: Fixtures.packageRoot.appendingPathComponent("Docs/API.md"), encoding: .utf8)
        for route in try await Self.serverRoutes() {
            #expect(text.contains("`\(route)"), "Docs/API.md does not mention `\(route)`")
        }
    }
}
