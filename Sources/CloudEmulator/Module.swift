enum CloudEmulatorModule {}
