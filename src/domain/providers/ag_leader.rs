//! AgLeader AgFiniti: one `credential_provider!` block.

credential_provider! {
    /// AgLeader AgFiniti credentials: the grower's refresh token and your application's key pair.
    AgLeader {
        name: "AgLeader",
        title: "AgLeader AgFiniti",
        slug: "ag-leader-credentials",
        object: "agLeaderCredentials",
        operation: "ag_leader",
        request: AgLeaderCredentialsRequest,
        response: AgLeaderCredentials,
        fields: {
            /// The grower's refresh token, from AgLeader's OAuth consent flow.
            required secret refresh_token: String,
            /// Your application's public key from AgLeader.
            required plain public_key: String,
            /// Your application's private key from AgLeader.
            required secret private_key: String,
            /// An access token, if you already hold a valid one.
            optional secret access_token: Option<String>,
        },
        extras: {},
        // AgFiniti has no separate test environment: the developer account is the test account.
        check: CheckKind::OAuthRefresh(OAuthCheck {
            client_auth: ClientAuth::Basic { id: "publicKey", secret: "privateKey" },
            production_token_url: Some("https://www.agfiniti.com/api/token"),
            stage_token_url: None,
        }),
        example: {
            "refreshToken": "grower-refresh-token",
            "publicKey": "your-public-key",
            "privateKey": "your-private-key"
        },
    }
}
