// Header-only target; this file keeps SwiftPM happy.
