enum ConnectivityModule {}
