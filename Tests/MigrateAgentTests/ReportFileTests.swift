import Foundation
import MigrateAgent
import Testing

/// Report paths are checked before a migration starts; signal numbers get their names.
@Suite("report files and signal names")
struct ReportFileTests {
    @Test("a report into a missing directory is refused, naming the path and the directory")
    func missingDirectory() throws {
        let path = "/nonexistent-\(UUID().uuidString)/report.json"
        let text = try #require(invalidArgumentMessage { try ReportFormatting.checkWritable(path) })
        #expect(text.contains(path) && text.contains("does not exist"), "\(text)")
    }

    @Test("a directory as the report path, or a file as its directory, is refused")
    func notAFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("report-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let text = try #require(invalidArgumentMessage { try ReportFormatting.checkWritable(directory.path) })
        #expect(text.contains("is a directory"), "\(text)")
        let file = directory.appendingPathComponent("plain").path
        #expect(FileManager.default.createFile(atPath: file, contents: Data()))
        let nested = try #require(invalidArgumentMessage { try ReportFormatting.checkWritable(file + "/report.json") })
        #expect(nested.contains("not a directory"), "\(nested)")
    }

    @Test("a new or existing file in a writable directory, or a bare name, is accepted")
    func writable() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("report-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("r.json").path
        try ReportFormatting.checkWritable(path)
        #expect(!FileManager.default.fileExists(atPath: path), "the check creates nothing")
        #expect(FileManager.default.createFile(atPath: path, contents: Data("{}".utf8)))
        try ReportFormatting.checkWritable(path)
        try ReportFormatting.checkWritable("report-in-the-working-directory.json")
    }

    @Test("signal numbers are named as kill -l names them")
    func signalNames() {
        #expect(ReportFormatting.signalName(9) == "SIGKILL")
        #expect(ReportFormatting.signalName(15) == "SIGTERM")
        #expect(ReportFormatting.signalName(2) == "SIGINT")
        #expect(ReportFormatting.signalName(31) == "SIGSYS")
        #expect(ReportFormatting.signalName(34) == "SIGRTMIN")
        #expect(ReportFormatting.signalName(36) == "SIGRTMIN+2")
        #expect(ReportFormatting.signalName(0) == "unknown signal")
    }
}
